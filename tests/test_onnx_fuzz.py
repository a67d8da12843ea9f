"""Fuzz of cylstm.onnx_io.LSTM.from_onnx over mutated valid models.

Models written by LSTM.to_onnx are mutated (single-bit flips of the file with a fixed seed,
truncations, and field-level edits of the proto: shapes, element types, data, attributes,
node wiring, Identity cycles), and every mutant must either

- import as a model whose output matches onnxruntime running the same mutant (or, when
  onnxruntime refuses it, the float64 reference LSTM over the mutant's weights as onnx's own
  numpy_helper decodes them), or
- raise ValueError or NotImplementedError whose message starts with the source's name,

within a time limit per case. Mutants that claim huge sizes run in a subprocess under an
address-space limit (RLIMIT_AS) a few hundred MB above what the imports took.
Skipped without onnx / onnxruntime (CI installs both).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import cylstm
from cylstm import onnx_io
from reference import reference_model
from timelimit import time_limit

onnx = pytest.importorskip("onnx")
from onnx import AttributeProto, TensorProto, helper, numpy_helper  # noqa: E402

F32 = dict(atol=1e-5, rtol=1e-5)
F64 = dict(atol=1e-12, rtol=1e-12)
T, B, D, H = 5, 2, 3, 4  # T != B: a mutant that swaps the time and batch axes shows
SECONDS_PER_CASE = 5
BASES = {
    "uni": dict(num_layers=1),
    "stacked-bi-batch-first": dict(num_layers=2, bidirectional=True, batch_first=True),
    "stacked-float64": dict(num_layers=2, dtype=np.float64),
    # every variant the operator has, so that their attributes and P are mutated too
    "variants": dict(peepholes=True, clip=2.5, input_forget=True, reverse=True,
                     activations=[("HardSigmoid", 0.25, 0.5), ("ScaledTanh", 1.5, 0.75),
                                  ("LeakyRelu", 0.125)]),
}
_TORCH_FROM_ONNX = (0, 2, 3, 1)  # gate block k of torch's i, f, g, o is ONNX's i, o, f, c [k]


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


def base_proto(name):
    model = cylstm.LSTM(D, H, seed=7, **BASES[name])
    for parameter in model.state_dict():
        if parameter.startswith("weight_peephole"):  # non-zero, so that P is read
            setattr(model, parameter, np.linspace(-0.5, 0.5, 3 * H))
    return model.to_onnx()


# -- the oracle --------------------------------------------------------------------------------

class Checker:
    """Runs one mutant through LSTM.from_onnx and checks what comes out; counts outcomes."""

    def __init__(self, ort, base):
        self.ort = ort
        self.wiring = _wiring(base)
        self.counts = {"refused": 0, "matched onnxruntime": 0, "matched reference": 0}

    def check(self, source, label, proto, what):
        """`source` is given to LSTM.from_onnx; `proto` is the same model as a ModelProto
        (for the oracle; None if the bytes do not parse)."""
        try:
            with time_limit(SECONDS_PER_CASE):
                model = cylstm.LSTM.from_onnx(source)
        except (ValueError, NotImplementedError) as exc:
            assert str(exc).startswith(label + ": "), (what, exc)
            self.counts["refused"] += 1
            return
        assert proto is not None, what
        x = np.random.default_rng(0).standard_normal(
            (B, T, model.input_size) if model.batch_first else (T, B, model.input_size))
        x = x.astype(model.dtype)
        ours = model(x)
        ours = (ours[0], *ours[1])
        # cylstm reads the chain of LSTM nodes and ignores what the graph does around it;
        # the whole graph is its model only while everything but the LSTM nodes' attributes
        # and weights is as exported.
        theirs = None
        if _wiring(proto) == self.wiring:
            theirs = self._onnxruntime(proto, x, [a.shape for a in ours])
        if theirs is not None:
            for name, a, b in zip(("Y", "Y_h", "Y_c"), ours, theirs):
                np.testing.assert_allclose(a, b, err_msg=f"{what}: {name}", **F32)
            self.counts["matched onnxruntime"] += 1
            return
        params = _weights_as_onnx_decodes_them(proto, model, what)
        expected = reference_model(
            params, x, batch_first=model.batch_first, dtype=model.dtype, reverse=model.reverse,
            go_backwards=model.go_backwards, clip=model.clip, input_forget=model.input_forget,
            activations=model.activations or None)
        tolerance = F32 if model.dtype == np.float32 else F64
        for name, a, b in zip(("Y", "Y_h", "Y_c"), ours, (expected[0], *expected[1])):
            np.testing.assert_allclose(a, b, err_msg=f"{what}: {name}", **tolerance)
        self.counts["matched reference"] += 1

    def _onnxruntime(self, proto, x, shapes):
        """onnxruntime's (Y, Y_h, Y_c) for the mutant, or None if it cannot run it or its
        outputs are not laid out as cylstm's (e.g. a mutant that drops a Transpose)."""
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 4
        feeds = {"X": x, "sequence_lens": np.full(B, T, np.int32)}
        try:
            session = self.ort.InferenceSession(proto.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
            names = [value.name for value in session.get_inputs()]
            if "X" not in names or not set(names) <= set(feeds):
                return None
            outputs = session.run(None, {name: feeds[name] for name in names})
        except Exception:  # onnxruntime refuses the mutant: its many error types
            return None
        if [np.shape(a) for a in outputs[:3]] != shapes:
            return None
        return outputs[:3]


def _wiring(proto):
    """The serialized graph without LSTM attributes and without the weights' contents."""
    graph = onnx.GraphProto()
    graph.CopyFrom(proto.graph)
    weights = set()
    for node in graph.node:
        if node.op_type == "LSTM":
            node.ClearField("attribute")
            weights.update(node.input[1:4])
            weights.update(node.input[7:8])
    for tensor in graph.initializer:
        if tensor.name in weights:
            name = tensor.name
            tensor.Clear()
            tensor.name = name
    return graph.SerializeToString(deterministic=True)


def _weights_as_onnx_decodes_them(proto, model, what):
    """torch-layout parameters from the mutant's LSTM nodes (in graph order), decoded by
    onnx.numpy_helper and reordered here, independently of cylstm's reader."""
    tensors = {tensor.name: tensor for tensor in proto.graph.initializer}
    nodes = [node for node in proto.graph.node
             if node.op_type == "LSTM" and node.domain in ("", "ai.onnx")]
    assert len(nodes) == model.num_layers, what
    params = {}
    for layer, node in enumerate(nodes):
        W, R = (numpy_helper.to_array(tensors[name]) for name in node.input[1:3])
        Bias = numpy_helper.to_array(tensors[node.input[3]]) if len(node.input) > 3 \
            and node.input[3] else np.zeros((W.shape[0], 8 * model.hidden_size))
        for direction in range(W.shape[0]):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            torch = lambda a: np.concatenate(  # noqa: E731
                [np.split(a, 4)[k] for k in _TORCH_FROM_ONNX]).astype(model.dtype)
            params[f"weight_ih_{suffix}"] = torch(W[direction])
            params[f"weight_hh_{suffix}"] = torch(R[direction])
            w_bias, r_bias = np.split(Bias[direction], 2)
            params[f"bias_ih_{suffix}"], params[f"bias_hh_{suffix}"] = torch(w_bias), \
                torch(r_bias)
            if model.peepholes:  # P is ONNX's i, o, f; cylstm's is i, f, o
                P = numpy_helper.to_array(tensors[node.input[7]]) if len(node.input) > 7 \
                    and node.input[7] else np.zeros((W.shape[0], 3 * model.hidden_size))
                p_i, p_o, p_f = np.split(P[direction], 3)
                params[f"weight_peephole_{suffix}"] = np.concatenate([p_i, p_f, p_o])
    return params


# -- mutations ---------------------------------------------------------------------------------

def _copy(proto):
    mutant = onnx.ModelProto()
    mutant.CopyFrom(proto)
    return mutant


def _set_attribute(node, name, value, kind=None):
    """Replace (or add) attribute `name`; `kind` forces an AttributeProto type."""
    attribute = helper.make_attribute(name, value)
    if kind is not None:
        attribute.type = kind
    for index, existing in enumerate(node.attribute):
        if existing.name == name:
            node.attribute[index].CopyFrom(attribute)
            return
    node.attribute.append(attribute)


def field_mutations(proto):
    """(description, mutant) pairs: one field-level edit each."""
    graph = proto.graph
    for index, tensor in enumerate(graph.initializer):
        def edit(change, index=index):
            mutant = _copy(proto)
            change(mutant.graph.initializer[index])
            return mutant
        where = f"initializer {tensor.name}"
        for axis in range(len(tensor.dims)):
            for value in (tensor.dims[axis] + 1, 0, -1, 10**9, 2**40 + 1):
                yield f"{where} dims[{axis}]={value}", edit(
                    lambda t, axis=axis, value=value: t.dims.__setitem__(axis, value))
        yield f"{where} one dim fewer", edit(lambda t: t.dims.pop())
        yield f"{where} one dim more", edit(lambda t: t.dims.append(1))
        for data_type in (0, 2, 6, 7, 8, 9, 10, 11, 14, 16, 999):
            yield f"{where} data_type={data_type}", edit(
                lambda t, data_type=data_type: setattr(t, "data_type", data_type))
        yield f"{where} raw_data short", edit(lambda t: setattr(t, "raw_data", t.raw_data[:-1]))
        yield f"{where} raw_data doubled", edit(
            lambda t: setattr(t, "raw_data", t.raw_data * 2))
        yield f"{where} no data", edit(lambda t: t.ClearField("raw_data"))
        yield f"{where} as typed values", edit(_to_typed_field)  # valid: must import
        yield f"{where} external secret.bin", edit(_to_external)
        yield f"{where} renamed", edit(lambda t: setattr(t, "name", t.name + "_"))
        yield f"{where} removed", _without(proto, "initializer", index)

    for index, node in enumerate(graph.node):
        where = f"node {node.name}"

        def edit(change, index=index):
            mutant = _copy(proto)
            change(mutant.graph.node[index])
            return mutant
        yield f"{where} removed", _without(proto, "node", index)
        yield f"{where} op_type Identity", edit(lambda n: setattr(n, "op_type", "Identity"))
        yield f"{where} op_type LSTM", edit(lambda n: setattr(n, "op_type", "LSTM"))
        yield f"{where} domain", edit(lambda n: setattr(n, "domain", "com.example"))
        yield f"{where} no inputs", edit(lambda n: n.ClearField("input"))
        yield f"{where} one input fewer", edit(lambda n: n.input.pop())
        yield f"{where} extra input", edit(lambda n: n.input.append("X"))
        yield f"{where} output renamed", edit(
            lambda n: n.output.__setitem__(0, n.output[0] + "_"))
        yield f"{where} reads its own output", edit(
            lambda n: n.input.__setitem__(0, n.output[0]))
        for other in ("X", "", "missing", "W_l0", "Y_l0"):
            yield f"{where} input[0]={other!r}", edit(
                lambda n, other=other: n.input.__setitem__(0, other))
        yield from _attribute_mutations(proto, index, edit)

    for description, change in (("Identity cycle on X", _identity_cycle),
                                 ("Identity self-loop on X", _identity_self_loop),
                                 ("X removed from the graph inputs", _drop_graph_input)):
        mutant = _copy(proto)
        change(mutant.graph)
        yield description, mutant


def _attribute_mutations(proto, index, edit):
    node = proto.graph.node[index]
    where = f"node {node.name}"
    for attribute in node.attribute:
        name = attribute.name
        yield f"{where} without {name}", edit(
            lambda n, name=name: n.attribute.remove(next(a for a in n.attribute
                                                         if a.name == name)))
        for kind in (AttributeProto.FLOAT, AttributeProto.INT, AttributeProto.STRING,
                     AttributeProto.INTS, AttributeProto.STRINGS, AttributeProto.TENSOR):
            if kind != attribute.type:
                yield f"{where} {name} as type {kind}", edit(
                    lambda n, name=name, kind=kind: next(
                        a for a in n.attribute if a.name == name).__setattr__("type", kind))
    values = {"hidden_size": [0, -1, H + 1, 10**9, 2**62],
              "direction": ["reverse", "", "BIDIRECTIONAL", "forward", "bidirectional",
                            b"\xff\xfe"],
              "layout": [1, 2, -1],
              "activations": [["Sigmoid", "Tanh", "Tanh"] * 2, ["Sigmoid", "Tanh", "Tanh"],
                              ["Sigmoid", "Tanh"], [1, 2, 3], ["HardSigmoid", "Elu", "Relu"],
                              ["hard_sigmoid", "Tanh", "Tanh"], ["Gelu", "Tanh", "Tanh"]],
              "activation_alpha": [[0.75], [float("nan")], [0.5] * 9],
              "activation_beta": [[0.25], [float("inf")]],
              "clip": [3.0, 0.0, -1.0, float("inf"), float("nan")], "input_forget": [0, 1, 2],
              "unknown": [1],
              "perm": [[0, 1, 2], [2, 1, 0], [0, 1, 2, 3], [0, 2, 1, 3], [1, 0, 2], [9, 9, 9]],
              "axis": [1, 5]}
    for name, candidates in values.items():
        is_lstm = node.op_type == "LSTM"
        if (name in ("perm", "axis")) == is_lstm:
            continue
        for value in candidates:
            yield f"{where} {name}={value!r}", edit(
                lambda n, name=name, value=value: _set_attribute(n, name, value))


def _to_typed_field(tensor):
    array = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    tensor.ClearField("raw_data")
    field = {np.dtype(np.float32): "float_data", np.dtype(np.float64): "double_data",
             np.dtype(np.int64): "int64_data"}[array.dtype]
    getattr(tensor, field).extend(array.ravel().tolist())


def _to_external(tensor):
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "secret.bin"


def _without(proto, field, index):
    mutant = _copy(proto)
    del getattr(mutant.graph, field)[index]
    return mutant


def _first_lstm(graph):
    return next(node for node in graph.node if node.op_type == "LSTM")


def _identity_cycle(graph):
    graph.node.insert(0, helper.make_node("Identity", ["b"], ["a"]))
    graph.node.insert(0, helper.make_node("Identity", ["a"], ["b"]))
    _first_lstm(graph).input[0] = "a"


def _identity_self_loop(graph):
    graph.node.insert(0, helper.make_node("Identity", ["a"], ["a"]))
    _first_lstm(graph).input[0] = "a"


def _drop_graph_input(graph):
    del graph.input[0]


def bit_flips(data, count, rng):
    for position in rng.integers(0, 8 * len(data), count):
        mutant = bytearray(data)
        mutant[position // 8] ^= 1 << (position % 8)
        yield f"bit {position} flipped", bytes(mutant)


def truncations(data, count, rng):
    for length in sorted(set(rng.integers(0, len(data), count).tolist())):
        yield f"truncated to {length} bytes", data[:length]


def _parsed(data):
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception:  # protobuf's DecodeError and friends
        return None
    return proto


# -- the tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("base", BASES)
def test_field_mutations_import_correctly_or_are_refused(ort, base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a mutant pointing at ./secret.bin must not read it
    (tmp_path / "secret.bin").write_bytes(bytes(range(256)) * 64)
    proto = base_proto(base)
    checker = Checker(ort, proto)
    mutants = list(field_mutations(proto))
    for what, mutant in mutants:
        checker.check(mutant, "<ModelProto>", mutant, what)
    # the untouched model and the "typed values" mutants must import (and match)
    assert checker.counts["matched onnxruntime"] + checker.counts["matched reference"] >= 3, \
        checker.counts
    assert checker.counts["refused"] >= len(mutants) // 2, checker.counts


@pytest.mark.parametrize("base", BASES)
def test_bit_flips_and_truncations_import_correctly_or_are_refused(ort, base, tmp_path):
    proto = base_proto(base)
    data = proto.SerializeToString()
    rng = np.random.default_rng(sorted(BASES).index(base))
    checker = Checker(ort, proto)
    path = tmp_path / "model.onnx"
    cases = list(bit_flips(data, 120, rng)) + list(truncations(data, 20, rng))
    for number, (what, mutant) in enumerate(cases):
        if number % 10 == 0:  # a tenth of them from a file, named by its path
            path.write_bytes(mutant)
            checker.check(path, repr(str(path)), _parsed(mutant), what)
        else:
            checker.check(mutant, "<bytes>", _parsed(mutant), what)
    # most flips land in weights: the model imports and must compute with the flipped value
    assert checker.counts["matched onnxruntime"] + checker.counts["matched reference"] > 20, \
        checker.counts
    assert checker.counts["refused"] > 10, checker.counts


# -- huge claims, under a memory limit ---------------------------------------------------------

_MEMORY_MARGIN = 512 * 2**20


def huge_claims(folder):
    """(description, source, label) of small models that claim gigabytes."""
    proto = base_proto("uni")
    W = next(t for t in proto.graph.initializer if t.name == "W_l0")
    cases = []

    def add(description, change, by_path=False):
        mutant = _copy(proto)
        change(mutant, next(t for t in mutant.graph.initializer if t.name == "W_l0"))
        if by_path:
            path = os.path.join(folder, f"case{len(cases)}.onnx")
            with open(path, "wb") as file:
                file.write(mutant.SerializeToString())
            cases.append((description, path, repr(path)))
        else:
            cases.append((description, mutant.SerializeToString(), "<bytes>"))

    def external(offset=None, length=None, dims=None):
        def change(mutant, tensor):
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "weights.bin"), ("offset", offset),
                               ("length", length)):
                if value is not None:
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, str(value)
            if dims is not None:
                tensor.dims[:] = dims
        return change

    with open(os.path.join(folder, "weights.bin"), "wb") as file:
        file.write(W.raw_data)
    add("raw W claims 4e9 values", lambda m, t: t.dims.__setitem__(2, 10**9 // 20 * 3))
    add("typed W claims 1e9 values", lambda m, t: (t.ClearField("raw_data"),
                                                   t.float_data.extend([0.5] * 7),
                                                   t.dims.__setitem__(2, 10**9)))
    add("W claims 2**40 per axis", lambda m, t: t.dims.__setitem__(2, 2**40))
    add("hidden_size 1e9", lambda m, t: _set_attribute(_first_lstm(m.graph), "hidden_size",
                                                       10**9))
    add("external length 1e12", external(length=10**12), by_path=True)
    add("external offset 1e15", external(offset=10**15), by_path=True)
    add("external dims of 8 GB", external(dims=[1, 20, 10**8]), by_path=True)
    add("external dims and length of 8 GB", external(dims=[1, 20, 10**8], length=8 * 10**9),
        by_path=True)
    add("R claims (1, 4e5, 1e5)", lambda m, t: next(
        r for r in m.graph.initializer if r.name == "R_l0").dims.__setitem__(
            slice(None), [1, 4 * 10**5, 10**5]))
    add("Constant node claims 1e10 values", _huge_constant)
    return cases


def _huge_constant(mutant, tensor):
    constant = helper.make_tensor("W_const", TensorProto.FLOAT, [1, 20, 3],
                                  np.zeros(60, np.float32).tobytes(), raw=True)
    constant.dims[:] = [1, 20, 10**10]
    mutant.graph.node.insert(0, helper.make_node("Constant", [], ["W_const"], value=constant))
    _first_lstm(mutant.graph).input[1] = "W_const"


def huge_claims_main(folder):
    """Run in a subprocess: cap the address space, then import every huge claim."""
    import resource  # POSIX only, as is this test
    with open("/proc/self/statm") as file:
        used = int(file.read().split()[0]) * resource.getpagesize()
    cases = huge_claims(folder)
    resource.setrlimit(resource.RLIMIT_AS, (used + _MEMORY_MARGIN, resource.RLIM_INFINITY))
    for description, source, label in cases:
        with time_limit(SECONDS_PER_CASE):
            try:
                cylstm.LSTM.from_onnx(source)
            except (ValueError, NotImplementedError) as exc:
                assert str(exc).startswith(label + ": "), (description, exc)
            else:
                raise AssertionError(f"{description}: imported")
    print(f"refused {len(cases)} huge claims")


def test_huge_claims_are_refused_within_a_memory_limit(tmp_path):
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs Linux's /proc to size the memory limit")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_onnx_fuzz; "
            "test_onnx_fuzz.huge_claims_main(sys.argv[2])")
    result = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)),
         str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("refused 10 huge claims"), result.stdout
