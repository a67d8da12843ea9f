"""Keras interop (cylstm.keras_io): Keras LSTM and Bidirectional(LSTM) layers as cylstm models.

Two kinds of test:
- golden: the Keras results stored by tests/golden/make_keras_golden.py, converted through
  lstm_from_keras from stand-in layer objects (what the converter reads of a Keras layer);
  these, the refusals and lengths_from_mask always run;
- live: real Keras layers (skipped without keras; KERAS_BACKEND defaults to torch), which also
  establish Keras' masking semantics on their own, independently of cylstm.

Keras' answers in cylstm's terms (`output, (h_n, c_n) = model(x, hx, lengths)`):
return_sequences=True output = output; return_sequences=False output = h_n's directions
concatenated; return_state states [h, c] (Bidirectional [h_fw, c_fw, h_bw, c_bw]) = h_n[k],
c_n[k] interleaved; initial_state likewise into hx.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import cylstm
from cylstm.keras_io import lengths_from_mask
from testutil import load_golden_cases, tol

if importlib.util.find_spec("torch") is not None:
    # The lightest Keras backend here; an explicit KERAS_BACKEND still wins.
    os.environ.setdefault("KERAS_BACKEND", "torch")

# Keras 3.15's torch backend calls np.array(tensor, copy=False) on torch tensors: noise.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "keras_lstm.npz")
KERAS_VARIABLES = ("kernel", "recurrent_kernel", "bias")


# -- stand-ins for Keras layers: exactly what lstm_from_keras reads ----------------------------

class StandInLSTM:
    """A keras.layers.LSTM as the converter sees it: get_weights() and its settings."""

    def __init__(self, weights, units, use_bias=True, activation="tanh",
                 recurrent_activation="sigmoid", go_backwards=False,
                 zero_output_for_mask=False, dropout=0.0, recurrent_dropout=0.0):
        self._weights = [np.array(w) for w in weights]
        self.units = units
        self.use_bias = use_bias
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.go_backwards = go_backwards
        self.zero_output_for_mask = zero_output_for_mask
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout

    def get_weights(self):
        return [w.copy() for w in self._weights]


class StandInBidirectional:
    def __init__(self, forward_layer, backward_layer, merge_mode="concat"):
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode


def random_keras_weights(rng, D, H, use_bias=True, dtype=np.float32):
    """[kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,)] as Keras stores them."""
    shapes = [(D, 4 * H), (H, 4 * H)] + ([(4 * H,)] if use_bias else [])
    return [(0.5 * rng.standard_normal(shape)).astype(dtype) for shape in shapes]


# -- cylstm's answers in Keras' terms -----------------------------------------------------------

def hx_from_keras(initial_state):
    """Keras' [h, c] (or [h_fw, c_fw, h_bw, c_bw]) as cylstm's hx = (h0, c0)."""
    if initial_state is None:
        return None
    return np.stack(initial_state[0::2]), np.stack(initial_state[1::2])


def run_as_keras(model, x, lengths=None, initial_state=None):
    """(sequence output, last output, states in Keras' order) from one cylstm call."""
    output, (h_n, c_n) = model(x, hx_from_keras(initial_state), lengths=lengths)
    last_output = np.concatenate(list(h_n), axis=-1)
    states = [s for direction in zip(h_n, c_n) for s in direction]
    return output, last_output, states


def assert_matches(ours, keras_results, dtype):
    names = ["output", "last_output"] + [f"state {k}" for k in range(len(ours[2]))]
    ours_flat = [ours[0], ours[1], *ours[2]]
    theirs_flat = [keras_results[0], keras_results[1], *keras_results[2]]
    assert len(ours_flat) == len(theirs_flat)
    for name, got, expected in zip(names, ours_flat, theirs_flat):
        assert got.dtype == np.dtype(dtype) and got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, err_msg=name, **tol(dtype))


# -- golden file: always runs --------------------------------------------------------------------

GOLDEN_CASES = load_golden_cases("keras_lstm.npz")


def stand_in_from_golden(case):
    """The stored Keras layer rebuilt as stand-ins, with the settings Keras reported."""
    config = case["config"]
    layers = {}
    for half in ("layer", "forward_layer", "backward_layer"):
        if half in config:
            weights = [case[f"{half}/{v}"] for v in KERAS_VARIABLES if f"{half}/{v}" in case]
            layers[half] = StandInLSTM(weights, **config[half])
    if config["bidirectional"]:
        return StandInBidirectional(layers["forward_layer"], layers["backward_layer"],
                                    config["merge_mode"])
    return layers["layer"]


def test_golden_file_is_complete():
    assert os.path.getsize(GOLDEN) < 100_000
    configs = [case["config"] for case in GOLDEN_CASES.values()]
    assert {c["bidirectional"] for c in configs} == {True, False}
    for bidirectional in (True, False):
        cases = [c for c in GOLDEN_CASES.values() if c["config"]["bidirectional"] == bidirectional]
        assert any("lengths" in c for c in cases)
        assert any("initial_state" in c for c in cases)
        assert {any(k.endswith("/bias") for k in c) for c in cases} == {True, False}
    assert {c["x"].dtype for c in GOLDEN_CASES.values()} == {np.dtype("float32"),
                                                              np.dtype("float64")}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_converted_model_matches_golden(name):
    case = GOLDEN_CASES[name]
    dtype = case["x"].dtype
    model = cylstm.LSTM.from_keras(stand_in_from_golden(case))
    assert model.dtype == dtype and model.batch_first
    assert model.bidirectional == case["config"]["bidirectional"]
    initial_state = list(case["initial_state"]) if "initial_state" in case else None
    ours = run_as_keras(model, case["x"], case.get("lengths"), initial_state)
    assert_matches(ours, (case["output"], case["last_output"], list(case["states"])), dtype)


def test_golden_masking_semantics():
    """What the stored Keras outputs say, independently of cylstm: a standalone LSTM repeats a
    row's last valid output over its masked steps, a Bidirectional writes zeros there."""
    plain, bidirectional = GOLDEN_CASES["plain_masked"], GOLDEN_CASES["bidirectional_masked"]
    for row, length in enumerate(plain["lengths"]):
        padded = plain["output"][row, length:]
        np.testing.assert_array_equal(padded, np.broadcast_to(plain["output"][row, length - 1],
                                                              padded.shape))
    for row, length in enumerate(bidirectional["lengths"]):
        assert not bidirectional["output"][row, length:].any()
        assert np.abs(bidirectional["output"][row, :length]).min() > 0
    assert cylstm.LSTM.from_keras(stand_in_from_golden(plain)).padding == "carry"
    assert cylstm.LSTM.from_keras(stand_in_from_golden(bidirectional)).padding == "zeros"


def test_weights_map_by_transpose_and_bias_goes_to_bias_ih():
    rng = np.random.default_rng(0)
    kernel, recurrent_kernel, bias = random_keras_weights(rng, 3, 2)
    model = cylstm.LSTM.from_keras(StandInLSTM([kernel, recurrent_kernel, bias], units=2))
    np.testing.assert_array_equal(model.weight_ih_l0, kernel.T)
    np.testing.assert_array_equal(model.weight_hh_l0, recurrent_kernel.T)
    np.testing.assert_array_equal(model.bias_ih_l0, bias)
    np.testing.assert_array_equal(model.bias_hh_l0, np.zeros_like(bias))
    assert (model.input_size, model.hidden_size, model.bias) == (3, 2, True)


def test_without_bias_the_model_has_none():
    rng = np.random.default_rng(1)
    layer = StandInLSTM(random_keras_weights(rng, 3, 2, use_bias=False), units=2, use_bias=False)
    model = cylstm.LSTM.from_keras(layer)
    assert not model.bias and "bias_ih_l0" not in model.state_dict()


def test_dtype_follows_the_weights_unless_given():
    rng = np.random.default_rng(2)
    weights64 = random_keras_weights(rng, 2, 3, dtype=np.float64)
    assert cylstm.LSTM.from_keras(StandInLSTM(weights64, units=3)).dtype == np.float64
    assert cylstm.LSTM.from_keras(StandInLSTM(weights64, units=3), dtype=np.float32).dtype == np.float32
    weights16 = [w.astype(np.float16) for w in weights64]
    assert cylstm.LSTM.from_keras(StandInLSTM(weights16, units=3)).dtype == np.float32


def test_weights_are_copied():
    rng = np.random.default_rng(3)
    weights = random_keras_weights(rng, 2, 3)
    layer = StandInLSTM(weights, units=3)
    layer.get_weights = lambda: weights  # hand out the very arrays
    model = cylstm.LSTM.from_keras(layer)
    before = model.weight_ih_l0.copy()
    weights[0][:] = 7
    np.testing.assert_array_equal(model.weight_ih_l0, before)


REFUSALS = [  # the ONNX LSTM's activations are converted (tests/test_keras_variants.py)
    (dict(activation="relu6"), "activation='relu6'"),
    (dict(recurrent_activation="gelu"), "recurrent_activation='gelu'"),
]


@pytest.mark.parametrize("settings, message", REFUSALS, ids=[m for _, m in REFUSALS])
def test_refuses_settings_it_does_not_compute(settings, message):
    rng = np.random.default_rng(4)
    with pytest.raises(NotImplementedError, match=message.replace("(", r"\(")):
        cylstm.LSTM.from_keras(StandInLSTM(random_keras_weights(rng, 2, 3), units=3, **settings))


def _bidirectional_stand_in(rng, forward=None, backward=None, **kwargs):
    forward = forward or {}
    backward = {"go_backwards": True, **(backward or {})}
    return StandInBidirectional(
        StandInLSTM(random_keras_weights(rng, 2, 3), units=3, **forward),
        StandInLSTM(random_keras_weights(rng, 2, 3), units=3, **backward), **kwargs)


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave", None])
def test_refuses_bidirectional_merge_modes_other_than_concat(merge_mode):
    layer = _bidirectional_stand_in(np.random.default_rng(6), merge_mode=merge_mode)
    with pytest.raises(NotImplementedError, match="merge_mode"):
        cylstm.LSTM.from_keras(layer)


def test_refuses_bidirectional_with_settings_cylstm_does_not_compute():
    rng = np.random.default_rng(7)
    with pytest.raises(NotImplementedError, match=r"backward_layer\.activation='selu'"):
        cylstm.LSTM.from_keras(_bidirectional_stand_in(rng, backward=dict(activation="selu")))
    with pytest.raises(NotImplementedError, match="go_backwards"):
        cylstm.LSTM.from_keras(_bidirectional_stand_in(rng, forward=dict(go_backwards=True),
                                                backward=dict(go_backwards=False)))
    uneven = _bidirectional_stand_in(rng)
    uneven.backward_layer = StandInLSTM(random_keras_weights(rng, 2, 4), units=4,
                                        go_backwards=True)
    with pytest.raises(NotImplementedError, match="differ"):
        cylstm.LSTM.from_keras(uneven)


def test_refuses_what_is_not_a_built_lstm():
    rng = np.random.default_rng(8)
    with pytest.raises(TypeError, match="Keras LSTM"):
        cylstm.LSTM.from_keras(object())
    with pytest.raises(ValueError, match="build it first"):
        cylstm.LSTM.from_keras(StandInLSTM([], units=3))
    gru_like = [np.zeros((2, 9), np.float32), np.zeros((3, 9), np.float32),
                np.zeros(9, np.float32)]
    with pytest.raises(ValueError, match=r"kernel \(2, 9\)"):
        cylstm.LSTM.from_keras(StandInLSTM(gru_like, units=3))
    with pytest.raises(ValueError, match="expected 2 weight arrays"):
        cylstm.LSTM.from_keras(StandInLSTM(random_keras_weights(rng, 2, 3), units=3, use_bias=False))


def test_padding_follows_zero_output_for_mask():
    rng = np.random.default_rng(9)
    weights = random_keras_weights(rng, 2, 3)
    assert cylstm.LSTM.from_keras(StandInLSTM(weights, units=3)).padding == "carry"
    assert cylstm.LSTM.from_keras(StandInLSTM(weights, units=3, zero_output_for_mask=True)).padding \
        == "zeros"


def test_lengths_from_mask():
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    lengths = lengths_from_mask(mask)
    np.testing.assert_array_equal(lengths, [3, 1, 4])
    assert lengths.dtype == np.int64
    for bad, rows in [([[1, 0, 1, 0]], r"\[0\]"), ([[1, 1], [0, 1]], r"\[1\]"),
                      ([[1, 1], [0, 0]], r"\[1\]")]:
        with pytest.raises(ValueError, match=rows + ".*post-padded"):
            lengths_from_mask(np.array(bad, bool))
    with pytest.raises(ValueError, match="2-D"):
        lengths_from_mask(np.ones(3, bool))


def test_importing_keras_io_does_not_import_keras():
    code = "import sys, cylstm.keras_io; assert 'keras' not in sys.modules, 'keras imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(GOLDEN))


# -- real Keras: skipped without keras -----------------------------------------------------------

B, T, D, H = 4, 7, 3, 5
LENGTHS = np.array([7, 3, 1, 5])
MASK = np.arange(T)[None, :] < LENGTHS[:, None]


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def keras_layer(keras, bidirectional=False, use_bias=True, return_sequences=True,
                dtype="float32", seed=0, **lstm_kwargs):
    """A built layer with random weights (Keras' own init has zero biases)."""
    lstm = keras.layers.LSTM(H, use_bias=use_bias, return_sequences=return_sequences,
                             return_state=True, dtype=dtype, **lstm_kwargs)
    layer = keras.layers.Bidirectional(lstm) if bidirectional else lstm
    layer.build((None, T, D))
    rng = np.random.default_rng(seed)
    layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(dtype)
                       for w in layer.get_weights()])
    return layer


def with_return_sequences(keras, layer, return_sequences):
    """A layer like `layer` (same weights, default other settings), returning sequences or not."""
    bidirectional = hasattr(layer, "forward_layer")
    use_bias = (layer.forward_layer if bidirectional else layer).use_bias
    twin = keras_layer(keras, bidirectional, use_bias, return_sequences, dtype=layer.dtype)
    twin.set_weights(layer.get_weights())
    return twin


def run_keras(keras, layer, x, mask=None, initial_state=None):
    """(sequence output, last output, states) of `layer`, as NumPy arrays."""
    call = {}
    if mask is not None:
        call["mask"] = mask
    if initial_state is not None:
        call["initial_state"] = [keras.ops.convert_to_tensor(s) for s in initial_state]
    output, *states = layer(x, **call)
    last_output = with_return_sequences(keras, layer, False)(x, **call)[0]
    return tuple([keras.ops.convert_to_numpy(output), keras.ops.convert_to_numpy(last_output),
                  [keras.ops.convert_to_numpy(s) for s in states]])


def random_inputs(dtype=np.float32, seed=0, states=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    initial_state = [(0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(states)]
    return x, initial_state or None


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["plain", "bidirectional"])
def test_matches_keras(keras, bidirectional, use_bias):
    layer = keras_layer(keras, bidirectional, use_bias)
    x, _ = random_inputs()
    model = cylstm.LSTM.from_keras(layer)
    assert model.bias == use_bias and model.bidirectional == bidirectional
    assert_matches(run_as_keras(model, x), run_keras(keras, layer, x), np.float32)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["plain", "bidirectional"])
def test_matches_keras_with_initial_state(keras, bidirectional):
    layer = keras_layer(keras, bidirectional, seed=1)
    x, initial_state = random_inputs(seed=1, states=4 if bidirectional else 2)
    assert_matches(run_as_keras(cylstm.LSTM.from_keras(layer), x, initial_state=initial_state),
                   run_keras(keras, layer, x, initial_state=initial_state), np.float32)


def test_matches_keras_in_float64(keras):
    """Unmasked: with a mask Keras runs its generic LSTMCell, whose ops.matmul computes float64
    in float32 on non-TensorFlow backends (keras.backend.result_type maps float64 to float32)."""
    layer = keras_layer(keras, dtype="float64", seed=2)
    x, _ = random_inputs(np.float64, seed=2)
    model = cylstm.LSTM.from_keras(layer)
    assert model.dtype == np.float64
    assert_matches(run_as_keras(model, x), run_keras(keras, layer, x), np.float64)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["plain", "bidirectional"])
def test_matches_keras_with_a_mask(keras, bidirectional):
    layer = keras_layer(keras, bidirectional, seed=3)
    x, _ = random_inputs(seed=3)
    model = cylstm.LSTM.from_keras(layer)
    assert model.padding == ("zeros" if bidirectional else "carry")
    assert_matches(run_as_keras(model, x, LENGTHS), run_keras(keras, layer, x, MASK),
                   np.float32)


def test_keras_masking_semantics(keras):
    """Keras on its own: what masked (post-padded) steps do. Each row equals Keras run on the
    row cut to its length (so the state is held over masked steps and the backward half starts
    at the last valid step); the masked steps output the last valid output (standalone LSTM) or
    zeros (Bidirectional returning sequences)."""
    x, _ = random_inputs(seed=4)
    for bidirectional in (False, True):
        layer = keras_layer(keras, bidirectional, seed=4)
        output, last_output, states = run_keras(keras, layer, x, MASK)
        for row, length in enumerate(LENGTHS):
            alone, alone_last, alone_states = run_keras(keras, layer, x[row:row + 1, :length])
            np.testing.assert_allclose(output[row, :length], alone[0], **tol(np.float32))
            np.testing.assert_allclose(last_output[row], alone_last[0], **tol(np.float32))
            for state, alone_state in zip(states, alone_states):
                np.testing.assert_allclose(state[row], alone_state[0], **tol(np.float32))
            padded = output[row, length:]
            if bidirectional:
                assert not padded.any()
            else:
                np.testing.assert_array_equal(
                    padded, np.broadcast_to(output[row, length - 1], padded.shape))


def test_keras_masking_layer_is_the_mask_argument(keras):
    """keras.layers.Masking over zero-padded input gives the same as mask=; lengths_from_mask
    turns its mask into cylstm's lengths."""
    x, _ = random_inputs(seed=5)
    x[~MASK] = 0.0
    masking = keras.layers.Masking(mask_value=0.0)
    mask = keras.ops.convert_to_numpy(masking.compute_mask(x))
    np.testing.assert_array_equal(lengths_from_mask(mask), LENGTHS)
    for bidirectional in (False, True):
        layer = keras_layer(keras, bidirectional, seed=5)
        model = keras.Sequential([keras.Input((T, D)), masking, layer])
        output = keras.ops.convert_to_numpy(model(x)[0])
        np.testing.assert_allclose(output, run_keras(keras, layer, x, MASK)[0],
                                   **tol(np.float32))
        ours, _ = cylstm.LSTM.from_keras(layer)(x, lengths=LENGTHS)
        np.testing.assert_allclose(ours, output, **tol(np.float32))


def test_zero_output_for_mask_on_a_standalone_layer(keras):
    """zero_output_for_mask=True on a plain LSTM: zeros at masked steps, as padding='zeros'.
    (Its return_sequences=False twin returns zeros as a padded row's last output: a Keras quirk
    cylstm does not copy; h_n holds the real last output.)"""
    layer = keras_layer(keras, seed=6, zero_output_for_mask=True)
    x, _ = random_inputs(seed=6)
    model = cylstm.LSTM.from_keras(layer)
    assert model.padding == "zeros"
    output, _, states = run_keras(keras, layer, x, MASK)
    ours, (h_n, c_n) = model(x, lengths=LENGTHS)
    np.testing.assert_allclose(ours, output, **tol(np.float32))
    np.testing.assert_allclose(h_n[0], states[0], **tol(np.float32))
    np.testing.assert_allclose(c_n[0], states[1], **tol(np.float32))


def test_stateful_and_dropout_layers_convert(keras):
    """Settings that change no weight: a stateful layer's first call (from zeros) and a layer
    with dropout at inference agree with the converted model."""
    x, _ = random_inputs(seed=7)
    for kwargs in (dict(stateful=True), dict(dropout=0.3, recurrent_dropout=0.3)):
        lstm = keras.layers.LSTM(H, return_sequences=True, **kwargs)
        lstm.build((B, T, D))
        lstm.set_weights(keras_layer(keras, seed=7).get_weights())
        expected = keras.ops.convert_to_numpy(lstm(x))
        ours, _ = cylstm.LSTM.from_keras(lstm)(x)
        np.testing.assert_allclose(ours, expected, err_msg=str(kwargs), **tol(np.float32))


def test_real_keras_refusals(keras):
    """The converter reads real layers' settings (function names, not strings)."""
    refusals = [
        (dict(activation="relu6"), "activation='relu6'"),
        (dict(recurrent_activation="silu"), "recurrent_activation='silu'"),
    ]
    for kwargs, message in refusals:
        with pytest.raises(NotImplementedError, match=message):
            cylstm.LSTM.from_keras(keras_layer(keras, **kwargs))
    summed = keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode="sum")
    summed.build((None, T, D))
    with pytest.raises(NotImplementedError, match="merge_mode='sum'"):
        cylstm.LSTM.from_keras(summed)
    gru = keras.layers.GRU(H)
    gru.build((None, T, D))
    with pytest.raises(ValueError, match="not a plain LSTM|does not hold LSTM weights"):
        cylstm.LSTM.from_keras(gru)
    with pytest.raises(ValueError, match="build it first"):
        cylstm.LSTM.from_keras(keras.layers.LSTM(H))
