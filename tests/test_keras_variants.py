"""Keras LSTMs beyond the plain cell (issue 14): go_backwards on a standalone layer, the
activations Keras allows that are ONNX ones, unit_forget_bias.

Real Keras layers (torch backend) are the oracle, compared twice: with tests/reference.py's
reference_model over the converted configuration and weights (the conversion on its own), and
with the converted model itself (tests named *_model_*). Stand-ins (what the converter reads of
a layer) check the mapping without Keras.
"""

import importlib.util
import os

import numpy as np
import pytest

import cylstm
from cylstm.keras_io import parts_from_keras
from reference import reference_model
from test_keras import StandInLSTM, random_keras_weights
from testutil import tol

if importlib.util.find_spec("torch") is not None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

B, T, D, H = 3, 6, 4, 5
LENGTHS = np.array([6, 2, 4])
MASK = np.arange(T)[None, :] < LENGTHS[:, None]
F32 = tol(np.float32)

# (activation, recurrent_activation): every Keras activation that is an ONNX one
ACTIVATION_PAIRS = [("relu", "hard_sigmoid"), ("linear", "sigmoid"), ("elu", "hard_sigmoid"),
                    ("leaky_relu", "softsign"), ("softsign", "sigmoid"), ("softplus", "tanh")]


# -- stand-ins: the mapping ----------------------------------------------------------------------

def stand_in(**settings):
    return StandInLSTM(random_keras_weights(np.random.default_rng(0), D, H), units=H,
                       **settings)


def test_activations_map_to_onnx_ones():
    config, _ = parts_from_keras(stand_in(activation="linear",
                                          recurrent_activation="hard_sigmoid"))
    assert config["activations"] == [[["hard_sigmoid", 1 / 6, 0.5], ["affine", 1.0, 0.0],
                                      ["affine", 1.0, 0.0]]]
    config, _ = parts_from_keras(stand_in(activation="leaky_relu", recurrent_activation="elu"))
    assert config["activations"] == [[["elu", 1.0, 0.0], ["leaky_relu", 0.2, 0.0],
                                      ["leaky_relu", 0.2, 0.0]]]
    config, _ = parts_from_keras(stand_in())
    assert "activations" not in config and "go_backwards" not in config
    assert parts_from_keras(stand_in(go_backwards=True))[0]["go_backwards"] is True


def test_hard_sigmoid_slope_is_read_off_the_function():
    def keras2_hard_sigmoid(x):  # tf.keras 2: clip(0.2 x + 0.5, 0, 1)
        return np.clip(0.2 * np.asarray(x) + 0.5, 0, 1)

    def other_hard_sigmoid(x):
        return np.clip(0.3 * np.asarray(x) + 0.5, 0, 1)

    keras2_hard_sigmoid.__name__ = other_hard_sigmoid.__name__ = "hard_sigmoid"
    config, _ = parts_from_keras(stand_in(recurrent_activation=keras2_hard_sigmoid))
    assert config["activations"][0][0] == ["hard_sigmoid", 0.2, 0.5]
    with pytest.raises(NotImplementedError, match="slope 0.3"):
        parts_from_keras(stand_in(recurrent_activation=other_hard_sigmoid))


@pytest.mark.parametrize("activation", ["relu6", "gelu", "selu", "swish", "exponential"])
def test_other_activations_are_refused_by_name(activation):
    with pytest.raises(NotImplementedError, match=f"layer.activation='{activation}'"):
        parts_from_keras(stand_in(activation=activation))


# -- real Keras ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def keras_layer(keras, bidirectional=False, seed=0, random_weights=True, **settings):
    lstm = keras.layers.LSTM(H, return_sequences=True, return_state=True, **settings)
    layer = keras.layers.Bidirectional(lstm) if bidirectional else lstm
    layer.build((None, T, D))
    if random_weights:
        rng = np.random.default_rng(seed)
        layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(np.float32)
                           for w in layer.get_weights()])
    return layer


def run_keras(keras, layer, x, mask=None):
    """(output, h_n, c_n) of a Keras layer in cylstm's shapes."""
    output, *states = layer(x, **({} if mask is None else {"mask": mask}))
    output, *states = (keras.ops.convert_to_numpy(a) for a in (output, *states))
    return output, np.stack(states[0::2]), np.stack(states[1::2])


def reference_of(model, x, lengths=None):
    output, (h_n, c_n) = reference_model(
        model.state_dict(), x, None, lengths, batch_first=model.batch_first,
        padding=model.padding, go_backwards=model.go_backwards,
        activations=model.activations or None)
    return output, h_n, c_n


def run_model(model, x, lengths=None):
    output, (h_n, c_n) = model(x, lengths=lengths)
    return output, h_n, c_n


def assert_all_close(ours, theirs):
    for name, a, b in zip(("output", "h_n", "c_n"), ours, theirs):
        assert np.shape(a) == np.shape(b), (name, np.shape(a), np.shape(b))
        np.testing.assert_allclose(a, b, err_msg=name, **F32)


def inputs(seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, D)).astype(np.float32)


def variant_layers(keras):
    """(id, Keras layer) of every variant compared below."""
    yield "go_backwards", keras_layer(keras, go_backwards=True)
    for activation, recurrent in ACTIVATION_PAIRS:
        yield f"{activation}-{recurrent}", keras_layer(
            keras, seed=1, activation=activation, recurrent_activation=recurrent)
    yield "bidirectional-hard_sigmoid", keras_layer(
        keras, bidirectional=True, seed=2, recurrent_activation="hard_sigmoid")


def test_conversion_matches_keras(keras):
    x = inputs()
    for name, layer in variant_layers(keras):
        model = cylstm.LSTM.from_keras(layer)
        try:
            assert_all_close(reference_of(model, x), run_keras(keras, layer, x))
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_model_matches_keras(keras):
    x = inputs()
    for name, layer in variant_layers(keras):
        try:
            assert_all_close(run_model(cylstm.LSTM.from_keras(layer), x),
                             run_keras(keras, layer, x))
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def _go_backwards_with_a_mask(keras, outputs):
    """Keras flips the whole padded row: its masked steps come first (zeros), then the row's
    n outputs, which are cylstm's first n; the final states agree."""
    layer = keras_layer(keras, seed=3, go_backwards=True)
    x = inputs(3)
    expected, h_n, c_n = run_keras(keras, layer, x, MASK)
    ours, our_h, our_c = outputs(cylstm.LSTM.from_keras(layer), x, LENGTHS)
    for row, n in enumerate(LENGTHS):
        np.testing.assert_allclose(ours[row, :n], expected[row, T - n:], **F32)
        assert not expected[row, :T - n].any()
    np.testing.assert_allclose(our_h, h_n, **F32)
    np.testing.assert_allclose(our_c, c_n, **F32)


def test_conversion_of_go_backwards_with_a_mask(keras):
    _go_backwards_with_a_mask(keras, reference_of)


def test_model_go_backwards_with_a_mask(keras):
    _go_backwards_with_a_mask(keras, run_model)


def test_unit_forget_bias_comes_with_the_weights(keras):
    # Keras's own initialisation: the forget gate's bias is 1, the others 0.
    layer = keras_layer(keras, random_weights=False, unit_forget_bias=True)
    _, state = parts_from_keras(layer)
    np.testing.assert_array_equal(state["bias_ih_l0"].reshape(4, H),
                                  np.repeat([[0.0], [1.0], [0.0], [0.0]], H, axis=1))
    x = inputs(4)
    assert_all_close(reference_of(cylstm.LSTM.from_keras(layer), x), run_keras(keras, layer, x))


def test_recurrent_dropout_is_kept_for_training():
    """A Keras layer's recurrent_dropout reaches the configuration (training only: the
    call's output is the same with and without it); dropout on x has no cylstm form."""
    config, _ = parts_from_keras(stand_in(recurrent_dropout=0.25, dropout=0.5))
    assert config["recurrent_dropout"] == 0.25 and "dropout" not in config
    plain_config, state = parts_from_keras(stand_in())
    assert "recurrent_dropout" not in plain_config
    model = cylstm.LSTM._from_parts(config, state)
    plain = cylstm.LSTM._from_parts(plain_config, state)
    x = np.random.default_rng(1).standard_normal((B, T, D)).astype(np.float32)
    np.testing.assert_array_equal(model(x)[0], plain(x)[0])
    _, _, backward = model.forward_train(x, rng=0)
    mask = backward.masks["recurrent_l0"]
    assert mask.shape == (B, H) and set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
