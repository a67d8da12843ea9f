"""ONNX in: the (config, state_dict) of an ONNX model's LSTM graph (writing: onnx_export).

ONNX's LSTM operator is one layer with a direction axis: W (dirs, 4H, D), R (dirs, 4H, H),
B (dirs, 8H) = [Wb, Rb], gate blocks in the order i, o, f, c. cylstm (like PyTorch) keeps one
(4H, ...) array per direction with gates i, f, g, o (g is ONNX's c). The gate blocks are
reordered once, when a model is read or written.

`onnx` is imported inside the functions that need it, so `import cylstm` never does;
`run_onnx_semantics` needs nothing but NumPy.

The model is untrusted data: see parts_from_onnx for what is read and refused.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._onnx_variants import PEEPHOLE_ORDER, variants_from_attributes
from ._onnx_tensors import open_regular_file, tensor_to_array
from ._params import checked_state_dict, config_from_dict
from ._validation import check_dtype

__all__ = ["parts_from_onnx"]

# Gate block k of one layout is block ORDER[k] of the other.
_TORCH_GATES_FROM_ONNX = (0, 2, 3, 1)  # i, f, g(=c), o  taken from  i, o, f, c
_ONNX_GATES_FROM_TORCH = (0, 3, 1, 2)  # i, o, f, c      taken from  i, f, g, o
# AttributeProto types: the field that holds each kind of value.
_FLOAT, _INT, _STRING, _TENSOR, _FLOATS, _INTS, _STRINGS = 1, 2, 3, 4, 6, 7, 8
_ATTRIBUTE_FIELDS = {_FLOAT: "f", _INT: "i", _STRING: "s", _TENSOR: "t", _FLOATS: "floats",
                     _INTS: "ints", _STRINGS: "strings"}
_TYPE_NAMES = {_FLOAT: "a float", _INT: "an int", _STRING: "a string", _TENSOR: "a tensor",
               _FLOATS: "floats", _INTS: "ints", _STRINGS: "strings"}
_LSTM_ATTRIBUTES = {"hidden_size": _INT, "direction": _STRING, "layout": _INT,
                    "activations": _STRINGS, "activation_alpha": _FLOATS,
                    "activation_beta": _FLOATS, "clip": _FLOAT, "input_forget": _INT}
_CONSTANT_ATTRIBUTES = {"value": _TENSOR, "value_float": _FLOAT, "value_floats": _FLOATS,
                        "value_int": _INT, "value_ints": _INTS}
_MAX_MODEL_BYTES = 2**31 - 1  # protobuf's limit for one serialized message
_LSTM_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")


# -- shared helpers ------------------------------------------------------------------------

def _import_onnx(caller):
    """The onnx module, or an ImportError that says what needs it and how to get it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs the optional package `onnx`: pip install onnx "
            f"(or pip install 'cylstm[onnx]')") from exc
    return onnx


def _reorder_gates(array, order):
    """Permute the len(order) gate blocks of `array` along axis 0 (4H, or 3H for P)."""
    blocks = np.split(np.asarray(array), len(order), axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


def _suffix(layer, direction):
    return f"l{layer}" + ("_reverse" if direction else "")


# -- reading -------------------------------------------------------------------------------

def parts_from_onnx(path_or_model: Union[str, os.PathLike[str], bytes, Any],
                    dtype: Optional[DTypeLike] = None,
                    ) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """(config, state_dict) of the LSTM node(s) of an ONNX model, for LSTM.from_onnx.

    Parameters
    ----------
    path_or_model : str, os.PathLike, bytes or onnx.ModelProto
        An .onnx file, its serialized bytes, or a loaded model.
    dtype : float32 or float64, optional
        The model dtype; by default float64 if the weights are float64, else float32.

    One LSTM node gives a one-layer model; a chain of LSTM nodes, each reading the previous
    one's Y after the usual reshape (Transpose [0, 2, 1, 3] + Reshape [0, 0, -1] as written by
    `LSTM.to_onnx`, or Squeeze of the direction axis for a forward LSTM), gives a stacked one.
    A Transpose [1, 0, 2] in front of the first node, or layout=1, makes it batch_first.
    A ReverseSequence over the LSTM's own sequence_lens (or, without sequence_lens, a Slice
    with step -1 along time) in front of the first node makes it go_backwards, as
    `LSTM.to_onnx` writes a go_backwards model. Nodes that are not LSTMs are ignored: the
    result is the LSTM part of the graph. The weights must be constants (initializers or
    Constant nodes). B may be absent (zero biases; the model still has bias=True).
    initial_h, initial_c and sequence_lens are run-time inputs: pass them as `hx` and
    `lengths`.

    The whole operator is read, per direction: direction="reverse" (reverse=True),
    peepholes P (i, o, f in ONNX, weight_peephole_l{k} in cylstm's i, f, o; an all-zero P
    is no peepholes), clip, input_forget and the activations with activation_alpha and
    activation_beta (see cylstm._onnx_variants: spelled and consumed as onnxruntime
    does). Stacked nodes must agree on everything but P (a node without P gets zero
    peepholes when another has them).

    Raises NotImplementedError for a constant non-zero initial state (cylstm models keep
    none). Raises ValueError for graphs it cannot map (no LSTM node, weights that are graph
    inputs, LSTM nodes that are not one chain, inconsistent layers) and for anything
    malformed (an unknown activation, a clip that is not positive): every ValueError and
    NotImplementedError about the model starts with its name (the path, "<bytes>" or
    "<ModelProto>"). A file that cannot be opened raises the usual OSError.

    The model is untrusted data: it is read in time and memory bounded by its size (and
    that of its external data). External data is read only for a model given by path,
    only from regular files inside the model's folder (symlinks resolved), and only the
    bytes that the tensor's shape calls for; a model given as bytes or a ModelProto with
    external data is refused, never read from the current directory.

    Examples
    --------
    >>> import numpy as np
    >>> import cylstm
    >>> from cylstm.onnx_io import parts_from_onnx
    >>> proto = cylstm.LSTM(3, 4, num_layers=2, batch_first=True, seed=0).to_onnx()
    >>> config, state_dict = parts_from_onnx(proto)
    >>> config["num_layers"], config["batch_first"], config["dtype"]
    (2, True, 'float32')
    >>> parts_from_onnx(b"not onnx")
    Traceback (most recent call last):
    ...
    ValueError: <bytes>: ...
    """
    onnx = _import_onnx("from_onnx")
    if dtype is not None:
        dtype = check_dtype(dtype)
    proto, label, folder = _model_proto(onnx, path_or_model)
    try:
        config, state = _model_parts(_Graph(proto.graph, folder))
        if dtype is not None:
            config["dtype"] = dtype.name
        # Checked here, so that an error names the model it came from.
        return config, checked_state_dict(config_from_dict(config), state)
    except NotImplementedError as exc:
        raise NotImplementedError(f"{label}: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from exc


def _model_parts(graph):
    """(config, state_dict) of the LSTM chain in `graph`."""
    chain = _lstm_chain(graph)
    layers = [_read_lstm_node(node, graph) for node in chain]
    first = layers[0]
    _check_layers_agree(layers)
    go_backwards, transposed = _model_input(chain[0], first, graph)
    batch_first = (first["layout"] == 1) != transposed
    dtype = np.float64 if first["W"].dtype == np.float64 else np.float32
    config = dict(input_size=first["W"].shape[2], hidden_size=first["hidden_size"],
                  num_layers=len(layers), bias=True, batch_first=batch_first,
                  bidirectional=first["bidirectional"], dtype=np.dtype(dtype).name)
    peepholes = any(layer["P"] is not None for layer in layers)
    # The variants only when set, so a plain LSTM's config is as it always was.
    variants = dict(reverse=first["reverse"], go_backwards=go_backwards, peepholes=peepholes,
                    clip=first["clip"], input_forget=first["input_forget"],
                    activations=[[list(activation) for activation in triple]
                                 for triple in first["activations"]])
    config.update({key: value for key, value in variants.items() if value})
    state = {}
    for index, layer in enumerate(layers):
        state.update(_layer_state_dict(index, layer["W"], layer["R"], layer["B"],
                                       layer["P"], peepholes))
    return config, state


def _model_proto(onnx, source):
    """(ModelProto, label for messages, folder for external data or None) of `source`."""
    if isinstance(source, onnx.ModelProto):
        return source, "<ModelProto>", None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(onnx, bytes(source), "<bytes>"), "<bytes>", None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        label = repr(path)
        try:
            file, size = open_regular_file(path)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        with file:
            if size > _MAX_MODEL_BYTES:
                raise ValueError(
                    f"{label}: {size} bytes, more than the 2 GB an ONNX protobuf can hold "
                    "(larger models keep their weights in external data files)")
            data = file.read(size)
        return _parse(onnx, data, label), label, os.path.dirname(os.path.abspath(path))
    raise TypeError(
        "path_or_model must be a path (str or os.PathLike), bytes or an onnx.ModelProto, "
        f"got {type(source).__name__}")


def _parse(onnx, data, label):
    """A ModelProto from binary protobuf bytes (ONNX's file format), or a ValueError."""
    from google.protobuf.message import DecodeError

    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise ValueError(f"{label}: not an ONNX model (protobuf could not parse it: {exc})") \
            from None
    return proto


class _Graph:
    """Look-ups over the top-level graph: producers, constants, graph inputs."""

    def __init__(self, graph, folder):
        self.folder = folder  # where external data may be read from; None: nowhere
        self.nodes = list(graph.node)
        self.producers = {name: node for node in self.nodes for name in node.output if name}
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.constant_nodes = {node.output[0]: node for node in self.nodes
                               if _is_op(node, "Constant") and node.output}
        # Old exporters (IR < 4) list every initializer as a graph input too; those count
        # as constants, so only inputs without an initializer are run-time inputs.
        self.runtime_inputs = {value.name for value in graph.input} - set(self.initializers)

    def is_constant(self, name):
        return name in self.initializers or name in self.constant_nodes

    def constant(self, name, role):
        """The value of a constant tensor, or a ValueError naming `role` and why not."""
        if name in self.initializers:
            return tensor_to_array(self.initializers[name], self.folder)
        if name in self.constant_nodes:
            return _constant_node_value(self.constant_nodes[name], self.folder)
        if name in self.runtime_inputs:
            raise ValueError(
                f"{role} ({name!r}) is a graph input, not a constant: cylstm needs the "
                "weights stored in the model (as initializers or Constant nodes)")
        if name in self.producers:
            raise ValueError(
                f"{role} ({name!r}) is computed by a {self.producers[name].op_type} node; "
                "cylstm needs constant weights (fold the constants in the graph first)")
        raise ValueError(f"{role} ({name!r}) is not defined anywhere in the graph")

    def source(self, name):
        """The tensor `name` copies through Identity nodes (`name` itself if none)."""
        seen = {name}
        node = self.producers.get(name)
        while node is not None and _is_op(node, "Identity"):
            name = _first_input(node)
            if not name:
                raise ValueError(f"Identity node {_describe(node)} has no input")
            if name in seen:
                raise ValueError(
                    f"Identity node {_describe(node)} is part of a cycle of Identity nodes "
                    f"(through {name!r}): not a valid ONNX graph")
            seen.add(name)
            node = self.producers.get(name)
        return name

    def producer_skipping_identity(self, name):
        """The node that makes `name`, looking through Identity nodes; None for inputs."""
        return self.producers.get(self.source(name))


def _is_op(node, op_type):
    return node.op_type == op_type and node.domain in ("", "ai.onnx")


def _first_input(node):
    """A node's first input ("" if it has none: that reads as an absent optional input)."""
    return node.input[0] if node.input else ""


def _constant_node_value(node, folder):
    """The ndarray a Constant node makes (value, value_float(s) or value_int(s))."""
    attributes = _node_attributes(node, _CONSTANT_ATTRIBUTES)
    if "value" in attributes:
        return tensor_to_array(attributes["value"], folder)
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        if name in attributes:
            return np.array(attributes[name], dtype=dtype)
    raise ValueError(f"Constant node {_describe(node)} has no numeric value cylstm can read")


def _describe(node):
    if node.name:
        return repr(node.name[:200])
    return f"({node.op_type[:50]} -> {[name[:100] for name in node.output[:3]]})"


def _node_attributes(node, types):
    """{name: value} of the attributes of `node` named in `types` ({name: AttributeProto
    type}), strings decoded; a ValueError for an attribute of another type."""
    attributes = {}
    for attribute in node.attribute:
        expected = types.get(attribute.name)
        if expected is None:
            continue
        if attribute.ref_attr_name or attribute.type != expected:
            raise ValueError(
                f"{node.op_type} node {_describe(node)}: attribute {attribute.name!r} must be "
                f"{_TYPE_NAMES[expected]}, got {_attribute_kind(attribute)}")
        value = getattr(attribute, _ATTRIBUTE_FIELDS[expected])
        if expected == _STRING:
            value = _decode(value, node, attribute.name)
        elif expected == _STRINGS:
            value = [_decode(v, node, attribute.name) for v in value]
        elif expected in (_INTS, _FLOATS):
            value = list(value)
        attributes[attribute.name] = value
    return attributes


def _attribute_kind(attribute):
    if attribute.ref_attr_name:
        return f"a reference to a function attribute ({attribute.ref_attr_name[:50]!r})"
    return _TYPE_NAMES.get(attribute.type, f"attribute type {attribute.type}")


def _decode(value, node, name):
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{node.op_type} node {_describe(node)}: attribute {name!r} is not "
                         "UTF-8 text") from None


def _read_lstm_node(node, graph):
    """One LSTM node as {hidden_size, bidirectional, reverse, layout, W, R, B, P,
    sequence_lens, where, clip, input_forget, activations}."""
    where = f"LSTM node {_describe(node)}"
    if len(node.input) < 3 or not all(node.input[:3]):
        raise ValueError(f"{where} must have the inputs X, W and R, got {list(node.input)}")
    unknown = {attribute.name for attribute in node.attribute} - set(_LSTM_ATTRIBUTES)
    if unknown:
        raise ValueError(f"{where}: unknown LSTM attribute(s) {sorted(unknown)}")
    attributes = _node_attributes(node, _LSTM_ATTRIBUTES)
    direction = _read_direction(attributes, where)
    directions = 2 if direction == "bidirectional" else 1
    try:
        variants = variants_from_attributes(attributes, directions)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    inputs = dict(zip(_LSTM_INPUTS, list(node.input) + [""] * len(_LSTM_INPUTS)))
    for name in ("initial_h", "initial_c"):
        _refuse_constant_state(inputs[name], name, graph, where)
    layout = attributes.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{where}: layout must be 0 or 1, got {layout!r}")
    W = graph.constant(inputs["W"], f"{where} input W")
    R = graph.constant(inputs["R"], f"{where} input R")
    B = graph.constant(inputs["B"], f"{where} input B") if inputs["B"] else None
    hidden_size = _check_weight_shapes(W, R, B, directions, attributes, where)
    P = _read_peepholes(inputs["P"], graph, directions, hidden_size, where)
    return dict(hidden_size=hidden_size, bidirectional=directions == 2,
                reverse=direction == "reverse", layout=layout, W=W, R=R, B=B, P=P,
                sequence_lens=inputs["sequence_lens"], where=where, **variants)


def _read_direction(attributes, where):
    """The direction attribute: 'forward', 'reverse' or 'bidirectional'."""
    direction = attributes.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(
            f"{where}: direction must be 'forward', 'reverse' or 'bidirectional', "
            f"got {direction[:40]!r}")
    return direction


def _read_peepholes(name, graph, directions, hidden_size, where):
    """The constant P (directions, 3H), ONNX's i, o, f; None if absent or all zero."""
    if not name:
        return None
    P = graph.constant(name, f"{where} input P")
    if not np.issubdtype(P.dtype, np.floating):
        raise ValueError(f"{where}: P must be floating point, got {P.dtype}")
    if P.shape != (directions, 3 * hidden_size):
        raise ValueError(
            f"{where}: P must have shape ({directions}, {3 * hidden_size}), got {P.shape}")
    return P if np.any(P) else None


def _refuse_constant_state(name, role, graph, where):
    """A constant non-zero initial state cannot live in a cylstm model (hx is per call)."""
    if name and graph.is_constant(name) and np.any(graph.constant(name, f"{where} {role}")):
        raise NotImplementedError(
            f"{where}: a constant non-zero {role} is not supported; cylstm models keep no "
            "initial state: pass it as hx when calling the model")


def _check_weight_shapes(W, R, B, directions, attributes, where):
    """Check W, R, B against each other and hidden_size; return hidden_size."""
    for name, array in (("W", W), ("R", R)) + ((("B", B),) if B is not None else ()):
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{where}: {name} must be floating point, got {array.dtype}")
    if R.ndim != 3 or R.shape[0] != directions or R.shape[1] != 4 * R.shape[2] \
            or R.shape[2] == 0:
        raise ValueError(
            f"{where}: R must have shape (num_directions={directions}, 4*hidden_size, "
            f"hidden_size), got {R.shape}")
    hidden_size = R.shape[2]
    if attributes.get("hidden_size", hidden_size) != hidden_size:
        raise ValueError(
            f"{where}: attribute hidden_size={attributes['hidden_size']} does not match "
            f"R's shape {R.shape}")
    if W.ndim != 3 or W.shape[:2] != (directions, 4 * hidden_size) or W.shape[2] == 0:
        raise ValueError(
            f"{where}: W must have shape ({directions}, {4 * hidden_size}, input_size), "
            f"got {W.shape}")
    if B is not None and B.shape != (directions, 8 * hidden_size):
        raise ValueError(
            f"{where}: B must have shape ({directions}, {8 * hidden_size}), got {B.shape}")
    return hidden_size


def _layer_state_dict(layer, W, R, B=None, P=None, peepholes=False):
    """cylstm/PyTorch parameters of one layer from ONNX's W, R and optional B and P
    (zero peepholes without P when the model has peepholes)."""
    state = {}
    for direction in range(W.shape[0]):
        suffix = _suffix(layer, direction)
        state[f"weight_ih_{suffix}"] = _reorder_gates(W[direction], _TORCH_GATES_FROM_ONNX)
        state[f"weight_hh_{suffix}"] = _reorder_gates(R[direction], _TORCH_GATES_FROM_ONNX)
        if B is None:
            w_bias = r_bias = np.zeros(W.shape[1], W.dtype)
        else:
            w_bias, r_bias = np.split(B[direction], 2)
        state[f"bias_ih_{suffix}"] = _reorder_gates(w_bias, _TORCH_GATES_FROM_ONNX)
        state[f"bias_hh_{suffix}"] = _reorder_gates(r_bias, _TORCH_GATES_FROM_ONNX)
        if peepholes:
            state[f"weight_peephole_{suffix}"] = (
                np.zeros(3 * R.shape[2], W.dtype) if P is None
                else _reorder_gates(P[direction], PEEPHOLE_ORDER))
    return state


def _lstm_chain(graph):
    """The LSTM nodes ordered as stacked layers, or a ValueError if they are not a chain."""
    nodes = [node for node in graph.nodes if _is_op(node, "LSTM")]
    if not nodes:
        raise ValueError("the ONNX graph has no LSTM node (only the top-level graph is read)")
    if len(nodes) == 1:
        return nodes
    by_y = {node.output[0]: index for index, node in enumerate(nodes)
            if node.output and node.output[0]}
    below = [_stacked_on(node, graph, nodes, by_y) for node in nodes]
    above = {}
    for index, previous in enumerate(below):
        if previous is not None:
            if previous in above:
                raise ValueError(
                    f"LSTM node {_describe(nodes[previous])} feeds two LSTM nodes; cylstm maps "
                    "only a single chain of stacked layers")
            above[previous] = index
    bottoms = [index for index, previous in enumerate(below) if previous is None]
    if len(bottoms) != 1:
        raise ValueError(
            f"the graph has {len(nodes)} LSTM nodes that are not one chain of stacked layers "
            f"({len(bottoms)} of them read no other LSTM's output through the Transpose + "
            "Reshape (or Squeeze) that LSTM.to_onnx writes); cylstm cannot map it")
    order = [bottoms[0]]
    while order[-1] in above:
        order.append(above[order[-1]])
    if len(order) != len(nodes):  # the others stack on each other in a cycle
        raise ValueError(
            f"the graph has {len(nodes)} LSTM nodes but only {len(order)} form a chain of "
            "stacked layers from the input (the others read each other's output in a cycle)")
    return [nodes[index] for index in order]


def _stacked_on(node, graph, nodes, by_y):
    """Index of the LSTM node whose Y this node reads as (T, B, dirs*H) input, else None.

    Recognised: Reshape(Transpose(Y, [0, 2, 1, 3]), [0, 0, -1 or dirs*H]) for layout 0,
    Reshape(Y, [0, 0, ...]) for layout 1, and Squeeze of the direction axis of a forward Y.
    """
    producer = graph.producer_skipping_identity(_first_input(node))
    if producer is None:
        return None
    if _is_op(producer, "Reshape") and _merges_last_two_axes(producer, graph):
        data = graph.producer_skipping_identity(_first_input(producer))
        if data is not None and _is_op(data, "Transpose") \
                and _permutation(data) == [0, 2, 1, 3]:
            return _lstm_with_y(_first_input(data), graph, nodes, by_y, layouts=(0,))
        return _lstm_with_y(_first_input(producer), graph, nodes, by_y, layouts=(1,))
    if _is_op(producer, "Squeeze"):
        axes = _squeeze_axes(producer, graph)
        for layout, axis in ((0, 1), (1, 2)):
            if axes in ([axis], [axis - 4]):
                index = _lstm_with_y(_first_input(producer), graph, nodes, by_y,
                                     layouts=(layout,))
                if index is not None and _node_direction(nodes[index]) != "bidirectional":
                    return index
    return None


def _lstm_with_y(name, graph, nodes, by_y, layouts):
    """Index of the LSTM node whose Y output is `name` (through Identity), if its layout fits."""
    name = graph.source(name)
    producer = graph.producers.get(name)
    if producer is None or not _is_op(producer, "LSTM") or name not in by_y:
        return None  # not an LSTM's Y (Y_h, Y_c or anything else)
    if _node_attributes(producer, _LSTM_ATTRIBUTES).get("layout", 0) not in layouts:
        return None
    return by_y[name]


def _node_direction(node):
    return _node_attributes(node, _LSTM_ATTRIBUTES).get("direction", "forward")


def _permutation(transpose):
    return _node_attributes(transpose, {"perm": _INTS}).get("perm", [])


def _merges_last_two_axes(reshape, graph):
    """Whether a Reshape keeps the first two axes (shape [0, 0, n]) and merges the rest."""
    if _node_attributes(reshape, {"allowzero": _INT}).get("allowzero", 0) \
            or len(reshape.input) < 2 or not graph.is_constant(reshape.input[1]):
        return False
    shape = _integers(graph.constant(reshape.input[1], "Reshape shape"))
    return shape is not None and len(shape) == 3 and shape[:2] == [0, 0] \
        and (shape[2] == -1 or shape[2] > 0)


def _squeeze_axes(squeeze, graph):
    """A Squeeze's axes: an attribute up to opset 12, a constant input from opset 13."""
    attributes = _node_attributes(squeeze, {"axes": _INTS})
    if "axes" in attributes:
        return attributes["axes"]
    if len(squeeze.input) > 1 and squeeze.input[1] and graph.is_constant(squeeze.input[1]):
        return _integers(graph.constant(squeeze.input[1], "Squeeze axes"))
    return None


def _integers(array):
    """A constant shape or axes as a list of ints; None if it is not integers of rank <= 1."""
    if array.ndim > 1 or not np.issubdtype(array.dtype, np.integer):
        return None
    return np.atleast_1d(array).tolist()


def _model_input(first_node, first, graph):
    """(go_backwards, transposed): whether the first LSTM reads the graph's input with each
    row reversed (see _reverses_rows), and through Transpose [1, 0, 2] (T <-> B)."""
    producer = graph.producer_skipping_identity(_first_input(first_node))
    go_backwards = producer is not None and _reverses_rows(producer, first, graph)
    if go_backwards:
        producer = graph.producer_skipping_identity(_first_input(producer))
    transposed = producer is not None and _is_op(producer, "Transpose") \
        and _permutation(producer) == [1, 0, 2]
    return go_backwards, transposed


def _reverses_rows(node, lstm, graph):
    """Whether `node` reverses each row of the LSTM's input within its length, as a
    go_backwards model's export does: ReverseSequence over the LSTM's own sequence_lens
    (perhaps through a Cast to int64), or without sequence_lens a whole Slice with step -1
    along time."""
    time_axis = 1 if lstm["layout"] else 0
    if _is_op(node, "ReverseSequence"):
        axes = _node_attributes(node, {"batch_axis": _INT, "time_axis": _INT})
        if (axes.get("batch_axis", 1), axes.get("time_axis", 0)) != (1 - time_axis, time_axis) \
                or len(node.input) < 2 or not lstm["sequence_lens"]:
            return False
        lengths = graph.producer_skipping_identity(node.input[1])
        source = graph.source(node.input[1]) if lengths is None or not _is_op(lengths, "Cast") \
            else graph.source(_first_input(lengths))
        return source == graph.source(lstm["sequence_lens"])
    if _is_op(node, "Slice") and not lstm["sequence_lens"] and len(node.input) == 5 \
            and all(graph.is_constant(name) for name in node.input[1:]):
        starts, ends, axes, steps = (_integers(graph.constant(name, "Slice input"))
                                     for name in node.input[1:])
        return starts == [-1] and axes in ([time_axis], [time_axis - 3]) and steps == [-1] \
            and ends is not None and len(ends) == 1 and ends[0] <= -2**31
    return False


def _check_layers_agree(layers):
    """Stacked nodes must share what cylstm.LSTM has once for all layers."""
    first = layers[0]
    for index, layer in enumerate(layers[1:], start=1):
        for key in ("hidden_size", "bidirectional", "reverse", "layout", "sequence_lens",
                    "clip", "input_forget", "activations"):
            if layer[key] != first[key]:
                raise ValueError(
                    f"stacked LSTM nodes disagree on {key}: {first['where']} has "
                    f"{first[key]!r}, {layer['where']} has {layer[key]!r}; cylstm.LSTM needs "
                    "one value for all layers")
        expected = (2 if first["bidirectional"] else 1) * first["hidden_size"]
        if layer["W"].shape[2] != expected:
            raise ValueError(
                f"{layer['where']} (layer {index}) has input size {layer['W'].shape[2]}; "
                f"a stacked layer reads num_directions * hidden_size = {expected} features")
