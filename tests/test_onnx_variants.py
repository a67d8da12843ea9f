"""The ONNX LSTM operator's variants (issue 14): peepholes P, clip, input_forget, every
activation with activation_alpha/activation_beta, direction="reverse", and Keras's
go_backwards written as a ReverseSequence in front of the node.

The oracles:
- onnxruntime (float32, within 1e-5) runs every variant;
- onnx's ReferenceEvaluator (float64, within 1e-12) honours P, direction and layout but not
  clip, input_forget, activations or sequence_lens (onnx 1.23's op_lstm.py takes them as
  unused arguments; test_reference_evaluator_ignores_these_attributes keeps that claim
  checked), so it is compared only for peepholes and reverse, at full length;
- tests/reference.py's reference_model over the converted configuration and weights, which
  proves a conversion on its own, whatever the kernel computes.
Tests named *_model_* run the converted cylstm model itself against the oracles.
"""

import numpy as np
import pytest

import cylstm
from cylstm import onnx_export
from cylstm.onnx_io import parts_from_onnx
from reference import reference_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

F32 = dict(atol=1e-5, rtol=1e-5)
F64 = dict(atol=1e-12, rtol=1e-12)
T, B, D, H = 6, 3, 4, 5
LENGTHS = np.array([6, 2, 4], np.int32)

# (direction, peepholes, attributes) of one LSTM node per case.
CASES = {
    "peepholes": ("forward", True, {}),
    "peepholes-bidirectional": ("bidirectional", True, {}),
    "clip": ("forward", False, dict(clip=0.6)),
    "input_forget": ("bidirectional", False, dict(input_forget=1)),
    "reverse": ("reverse", False, {}),
    "reverse-peepholes-clip": ("reverse", True, dict(clip=1.5)),
    "hardsigmoid-scaledtanh-softsign": ("forward", False, dict(
        activations=["HardSigmoid", "ScaledTanh", "Softsign"],
        activation_alpha=[0.3, 1.5], activation_beta=[0.4, 0.7])),
    "affine-leakyrelu-thresholdedrelu": ("forward", False, dict(
        activations=["Affine", "LeakyRelu", "ThresholdedRelu"],
        activation_alpha=[0.5, 0.1, 0.2], activation_beta=[0.25])),
    "sigmoid-relu-elu": ("forward", False, dict(
        activations=["Sigmoid", "Relu", "Elu"], activation_alpha=[0.7])),
    # onnxruntime's defaults: HardSigmoid 0.2, 0.5; LeakyRelu 0.01; Elu 1; the others 0
    "defaults-of-alpha-and-beta": ("forward", False, dict(
        activations=["hardsigmoid", "LeakyRelu", "Elu"])),
    "zero-defaults": ("forward", False, dict(
        activations=["Sigmoid", "SCALEDTANH", "ThresholdedRelu"])),
    "zero-default-affine": ("forward", False, dict(activations=["Sigmoid", "Tanh", "Affine"])),
    # alpha and beta run on across the directions; the surplus is ignored
    "per-direction-activations": ("bidirectional", False, dict(
        activations=["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Elu", "Affine"],
        activation_alpha=[0.25, 0.5, 2.0, 9.0], activation_beta=[0.6, -0.1, 9.0])),
    "everything": ("bidirectional", True, dict(
        clip=0.9, input_forget=1, activations=["Sigmoid", "Softsign", "Softplus"] * 2)),
}


# -- graphs and their oracles ----------------------------------------------------------------

def node_graph(case, dtype=np.float32, seed=0, lengths=True, state=True):
    """(one-node ONNX model, feeds) for CASES[case]."""
    direction, peepholes, attributes = CASES[case]
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng([seed, len(case)])
    draw = lambda *shape: rng.uniform(-0.7, 0.7, shape).astype(dtype)  # noqa: E731
    weights = {"W": draw(dirs, 4 * H, D), "R": draw(dirs, 4 * H, H), "B": draw(dirs, 8 * H)}
    if peepholes:
        weights["P"] = draw(dirs, 3 * H)
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info("X", element, [T, B, D])]
    feeds = {"X": rng.standard_normal((T, B, D)).astype(dtype)}
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
        feeds["sequence_lens"] = LENGTHS.copy()
    if state:
        for name in ("initial_h", "initial_c"):
            inputs.append(helper.make_tensor_value_info(name, element, [dirs, B, H]))
            feeds[name] = (0.5 * rng.standard_normal((dirs, B, H))).astype(dtype)
    node_inputs = ["X", "W", "R", "B", "sequence_lens" if lengths else "",
                   "initial_h" if state else "", "initial_c" if state else "",
                   "P" if peepholes else ""]
    while node_inputs[-1] == "":
        node_inputs.pop()
    node = helper.make_node("LSTM", node_inputs, ["Y", "Y_h", "Y_c"], name="lstm",
                            hidden_size=H, direction=direction, **attributes)
    outputs = [helper.make_tensor_value_info(name, element, None) for name in ("Y", "Y_h", "Y_c")]
    graph = helper.make_graph([node], case, inputs, outputs,
                              [numpy_helper.from_array(value, name)
                               for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, feeds


def ort_run(proto, feeds):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def evaluator_run(proto, feeds):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(proto).run(None, feeds)


def as_cylstm(Y, Y_h, Y_c):
    """ONNX's (T, dirs, B, H) Y as cylstm's (T, B, dirs * H) output, with the states."""
    steps, dirs, batch, hidden = Y.shape
    return Y.transpose(0, 2, 1, 3).reshape(steps, batch, dirs * hidden), Y_h, Y_c


def reference_of(model, x, lengths=None, hx=None):
    """reference_model over a model's configuration and weights (its kernel never runs)."""
    output, (h_n, c_n) = reference_model(
        model.state_dict(), x, hx, lengths, batch_first=model.batch_first,
        reverse=model.reverse, go_backwards=model.go_backwards, clip=model.clip,
        input_forget=model.input_forget, activations=model.activations or None)
    return output, h_n, c_n


def hx_of(feeds):
    return (feeds["initial_h"], feeds["initial_c"]) if "initial_h" in feeds else None


def assert_all_close(ours, theirs, tolerance):
    for name, a, b in zip(("Y", "Y_h", "Y_c"), ours, theirs):
        assert np.shape(a) == np.shape(b), (name, np.shape(a), np.shape(b))
        np.testing.assert_allclose(a, b, err_msg=name, **tolerance)


# -- reading: the conversion, and the model ----------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_conversion_matches_onnxruntime(case):
    proto, feeds = node_graph(case)
    model = cylstm.LSTM.from_onnx(proto)
    expected = as_cylstm(*ort_run(proto, feeds))
    got = reference_of(model, feeds["X"], feeds["sequence_lens"], hx_of(feeds))
    assert_all_close(got, expected, F32)


@pytest.mark.parametrize("case", CASES)
def test_model_matches_onnxruntime(case):
    proto, feeds = node_graph(case)
    model = cylstm.LSTM.from_onnx(proto)
    got = onnx_export.run_onnx_semantics(model, feeds["X"], feeds["sequence_lens"],
                                         feeds["initial_h"], feeds["initial_c"])
    assert_all_close(got, ort_run(proto, feeds), F32)


EVALUATED = ["peepholes", "peepholes-bidirectional", "reverse"]


@pytest.mark.parametrize("case", EVALUATED)
def test_conversion_matches_the_reference_evaluator_in_float64(case):
    proto, feeds = node_graph(case, np.float64, lengths=False)
    model = cylstm.LSTM.from_onnx(proto)
    assert model.dtype == np.float64
    got = reference_of(model, feeds["X"], hx=hx_of(feeds))
    assert_all_close(got, as_cylstm(*evaluator_run(proto, feeds)), F64)


@pytest.mark.parametrize("case", EVALUATED)
def test_model_matches_the_reference_evaluator_in_float64(case):
    proto, feeds = node_graph(case, np.float64, lengths=False)
    model = cylstm.LSTM.from_onnx(proto)
    got = onnx_export.run_onnx_semantics(model, feeds["X"], None, feeds["initial_h"],
                                         feeds["initial_c"])
    assert_all_close(got, evaluator_run(proto, feeds), F64)


@pytest.mark.parametrize("case", ["clip", "input_forget", "sigmoid-relu-elu"])
def test_reference_evaluator_ignores_these_attributes(case):
    # Why the float64 comparison leaves them out: the evaluator computes the plain cell.
    proto, feeds = node_graph(case, np.float64, lengths=False)
    plain = onnx.ModelProto()
    plain.CopyFrom(proto)
    del plain.graph.node[0].attribute[:]
    plain.graph.node[0].attribute.extend([helper.make_attribute("hidden_size", H),
                                          helper.make_attribute("direction", CASES[case][0])])
    for ours, plain_output in zip(evaluator_run(proto, feeds), evaluator_run(plain, feeds)):
        np.testing.assert_array_equal(ours, plain_output)


def test_variants_are_read_into_the_configuration_and_weights():
    proto, _ = node_graph("per-direction-activations")
    config, _ = parts_from_onnx(proto)
    assert config["activations"] == [
        [["sigmoid", 0.0, 0.0], ["tanh", 0.0, 0.0], ["tanh", 0.0, 0.0]],
        [["hard_sigmoid", 0.25, 0.6], ["elu", 0.5, 0.0], ["affine", 2.0, -0.1]]]
    proto, _ = node_graph("defaults-of-alpha-and-beta")
    config, _ = parts_from_onnx(proto)
    assert config["activations"] == [
        [["hard_sigmoid", 0.2, 0.5], ["leaky_relu", 0.01, 0.0], ["elu", 1.0, 0.0]]]
    proto, _ = node_graph("zero-defaults")
    assert parts_from_onnx(proto)[0]["activations"][0][1:] == [["scaled_tanh", 0.0, 0.0],
                                                               ["thresholded_relu", 0.0, 0.0]]
    proto, _ = node_graph("everything")
    config, state = parts_from_onnx(proto)
    assert (config["clip"], config["input_forget"], config["peepholes"]) == (0.9, True, True)
    P = numpy_helper.to_array(proto.graph.initializer[3])
    p_i, p_o, p_f = np.split(P[1], 3)  # ONNX's order; cylstm's is i, f, o
    np.testing.assert_array_equal(state["weight_peephole_l0_reverse"],
                                  np.concatenate([p_i, p_f, p_o]))
    proto, _ = node_graph("reverse")
    assert parts_from_onnx(proto)[0]["reverse"] is True


def _with_attributes(case, **attributes):
    proto, _ = node_graph(case)
    node = proto.graph.node[0]
    for name, value in attributes.items():
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute(name, value)])
    return proto


@pytest.mark.parametrize("attributes, message", [
    (dict(activations=["hard_sigmoid", "Tanh", "Tanh"]), "unknown activation 'hard_sigmoid'"),
    (dict(activations=["Gelu", "Tanh", "Tanh"]), "unknown activation 'Gelu'"),
    (dict(activations=["Sigmoid", "Tanh"]), "3 per direction"),
    (dict(activation_alpha=[float("nan")]), "finite"),
    (dict(clip=0.0), "clip must be a positive finite number, got 0.0"),
    (dict(clip=float("inf")), "clip must be"),
    (dict(input_forget=2), "input_forget must be 0 or 1, got 2"),
])
def test_malformed_variants_raise_value_error_naming_the_source(attributes, message):
    proto = _with_attributes("hardsigmoid-scaledtanh-softsign", **attributes)
    with pytest.raises(ValueError, match=message) as info:
        parts_from_onnx(proto)
    assert str(info.value).startswith("<ModelProto>: ")


def test_peepholes_must_be_a_constant_of_the_right_shape():
    proto, _ = node_graph("peepholes")
    P = proto.graph.initializer[3]
    P.CopyFrom(numpy_helper.from_array(np.zeros((1, 2 * H), np.float32), "P"))
    with pytest.raises(ValueError, match=r"^<ModelProto>: .*P must have shape \(1, 15\)"):
        parts_from_onnx(proto)
    proto, _ = node_graph("peepholes")
    proto.graph.input.append(helper.make_tensor_value_info("P", TensorProto.FLOAT, [1, 3 * H]))
    del proto.graph.initializer[3]
    with pytest.raises(ValueError, match="input P .*graph input, not a constant"):
        parts_from_onnx(proto)


# -- writing: round trips through onnxruntime --------------------------------------------------

EXPORTED = {
    "peepholes-clip-bidirectional-2-layers": dict(num_layers=2, bidirectional=True,
                                                  peepholes=True, clip=0.8),
    "input_forget-activations-batch-first": dict(
        batch_first=True, input_forget=True,
        activations=[("HardSigmoid", 0.25, 0.5), ("ScaledTanh", 1.5, 0.75), "Softsign"]),
    "per-direction-activations": dict(bidirectional=True, activations=[
        (("sigmoid",), ("tanh",), ("tanh",)),
        (("leaky_relu", 0.125), ("affine", 0.5, 0.25), ("elu",))]),
    "reverse-2-layers": dict(num_layers=2, reverse=True, peepholes=True),
    "go_backwards-2-layers": dict(num_layers=2, go_backwards=True),
    "go_backwards-batch-first": dict(batch_first=True, go_backwards=True, clip=1.0),
}


def exported(name, seed=3):
    model = cylstm.LSTM(D, H, seed=seed, **EXPORTED[name])
    rng = np.random.default_rng(seed)
    for parameter in model.state_dict():
        if parameter.startswith("weight_peephole"):
            setattr(model, parameter, rng.uniform(-0.7, 0.7, 3 * H))
    x = rng.standard_normal((B, T, D) if model.batch_first else (T, B, D)).astype(np.float32)
    return model, x


def export_feeds(x, sequence_lens):
    return {"X": x, **({"sequence_lens": LENGTHS.copy()} if sequence_lens else {})}


@pytest.mark.parametrize("sequence_lens", [True, False], ids=["lengths", "full"])
@pytest.mark.parametrize("name", EXPORTED)
def test_export_matches_the_reference_in_onnxruntime(name, sequence_lens):
    model, x = exported(name)
    proto = model.to_onnx(sequence_lens=sequence_lens)
    expected = ort_run(proto, export_feeds(x, sequence_lens))
    got = reference_of(model, x, LENGTHS if sequence_lens else None)
    assert_all_close(got, expected, F32)


@pytest.mark.parametrize("sequence_lens", [True, False], ids=["lengths", "full"])
@pytest.mark.parametrize("name", EXPORTED)
def test_exported_model_matches_onnxruntime(name, sequence_lens):
    model, x = exported(name)
    proto = model.to_onnx(sequence_lens=sequence_lens)
    output, (h_n, c_n) = model(x, lengths=LENGTHS if sequence_lens else None)
    assert_all_close((output, h_n, c_n), ort_run(proto, export_feeds(x, sequence_lens)), F32)


@pytest.mark.parametrize("sequence_lens", [True, False], ids=["lengths", "full"])
@pytest.mark.parametrize("name", EXPORTED)
def test_export_round_trips(name, sequence_lens):
    model, _ = exported(name)
    restored = cylstm.LSTM.from_onnx(model.to_onnx(sequence_lens=sequence_lens))
    assert restored.config() == model.config()
    for parameter, value in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[parameter], value,
                                      err_msg=parameter)


def test_go_backwards_is_written_as_a_reversal_in_front_of_the_first_node():
    model, _ = exported("go_backwards-2-layers")
    operators = lambda proto: [node.op_type for node in proto.graph.node]  # noqa: E731
    assert operators(model.to_onnx())[:3] == ["Cast", "ReverseSequence", "LSTM"]
    assert operators(model.to_onnx(sequence_lens=False))[:2] == ["Slice", "LSTM"]


def test_go_backwards_is_no_single_onnx_node():
    model, x = exported("go_backwards-2-layers")
    with pytest.raises(NotImplementedError, match="go_backwards"):
        onnx_export.run_onnx_semantics(cylstm.LSTM(D, H, go_backwards=True), x)


def test_alpha_and_beta_are_written_as_onnx_consumes_them():
    model = cylstm.LSTM(D, H, bidirectional=True, activations=[
        (("hard_sigmoid", 0.25, 0.5), ("leaky_relu", 0.125), "tanh"),
        (("affine", 2.0, 0.75), "relu", ("scaled_tanh", 1.5, 0.25))])
    node = next(node for node in model.to_onnx().graph.node if node.op_type == "LSTM")
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert [name.decode() for name in attributes["activations"]] == [
        "HardSigmoid", "LeakyRelu", "Tanh", "Affine", "Relu", "ScaledTanh"]
    assert attributes["activation_alpha"] == [0.25, 0.125, 2.0, 1.5]
    assert attributes["activation_beta"] == [0.5, 0.75, 0.25]
    plain = next(node for node in cylstm.LSTM(D, H).to_onnx().graph.node
                 if node.op_type == "LSTM")
    assert {a.name for a in plain.attribute} == {"hidden_size", "direction", "layout"}


def test_float32_attributes_read_back_as_written():
    # The attributes hold float32; 1/6 (Keras's hard_sigmoid slope) comes back as the
    # shortest decimal of its float32.
    model = cylstm.LSTM(D, H, clip=0.3, activations=[("hard_sigmoid", 1 / 6, 0.5), "tanh",
                                                     "tanh"])
    restored = cylstm.LSTM.from_onnx(model.to_onnx())
    assert restored.clip == 0.3
    assert restored.activations[0][0].alpha == 0.16666667
