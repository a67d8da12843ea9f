"""Keras LSTM layers as cylstm models: `parts_from_keras(layer)` gives the
(config, state_dict) that `LSTM.from_keras(layer)` builds its model from.

Keras is optional: nothing here imports it. The converter reads a layer by
duck typing (`get_weights()` and a few attributes), so it takes Keras 3 and
tf.keras layers alike, and anything else that looks like them.

The mapping
-----------
A Keras LSTM stores `kernel` (D, 4H), `recurrent_kernel` (H, 4H) and `bias`
(4H,), gate order i, f, c, o, which is torch's i, f, g, o. So the weights
only need transposing: weight_ih = kernel.T, weight_hh = recurrent_kernel.T,
bias_ih = bias and bias_hh = 0 (Keras has one bias). Keras layers are batch
first, so the model gets batch_first=True (time_major=True, a tf.keras 2
option, gives batch_first=False).

What Keras returns and where it is in cylstm's `output, (h_n, c_n) =
model(x, lengths=...)`:

- cylstm always returns the whole sequence and the final state, whatever
  `return_sequences` and `return_state` say.
- LSTM(return_sequences=True): `output`.
- LSTM(return_sequences=False): the last output, which is `h_n[0]` (equal to
  `output[:, -1]` when no row is padded, or with padding="carry").
- LSTM(return_state=True) states [h, c]: `h_n[0]`, `c_n[0]`.
- Bidirectional(LSTM(return_sequences=True)), merge_mode="concat": `output`
  (forward features first, as Keras concatenates them).
- Bidirectional(return_sequences=False): `concat([h_n[0], h_n[1]], -1)`.
- Bidirectional(return_state=True) states [h_fw, c_fw, h_bw, c_bw]: `h_n[0],
  c_n[0], h_n[1], c_n[1]`.
- An `initial_state` [h, c] (Bidirectional: [h_fw, c_fw, h_bw, c_bw]) is
  `hx=(h[None], c[None])` (`hx=(np.stack([h_fw, h_bw]), np.stack([c_fw,
  c_bw]))`).

Masks
-----
A Keras mask (from `Masking`, `Embedding(mask_zero=True)` or `mask=`) that
keeps each row's first `n` steps is `lengths` (see `lengths_from_mask`). Keras
then, measured with Keras 3.15 and the tests in tests/test_keras.py:

- keeps a row's state through its masked steps, so the final state is the
  one after its last valid step, as cylstm's;
- runs the backward half of a Bidirectional from each row's last valid step
  (its masked steps come first in reversed time and leave the zero state
  alone), as cylstm's reverse direction;
- outputs, at masked steps, the previous output (a standalone LSTM, whose
  `zero_output_for_mask` is False by default) or zeros (a Bidirectional with
  return_sequences=True forces `zero_output_for_mask=True` on both halves).

The converter picks padding="carry" for the first and padding="zeros" for the
second, from `zero_output_for_mask`. A standalone LSTM(go_backwards=True)
flips the whole padded sequence, so its masked steps come first in the order
processed: Keras's output of a row of n valid steps is zeros then the n
outputs, cylstm's (go_backwards reverses each row within its length) the n
outputs then padding; `keras_output[b, T - n:] == output[b, :n]`, and the final
states agree. One Keras quirk has no cylstm counterpart: a standalone
LSTM(zero_output_for_mask=True, return_sequences=False) returns zeros as the
last output of a padded row (cylstm's h_n[0] holds its real last output). Masks with holes, pre-padded
rows (Keras' `pad_sequences` pads at the front by default) and fully masked
rows have no `lengths` equivalent.

Activations
-----------
`recurrent_activation` is the gates' (ONNX's f), `activation` the candidate's
and the cell output's (g and h). The Keras activations that are ONNX ones are
converted: tanh, sigmoid, hard_sigmoid (Keras 3: relu6(x + 3) / 6, ONNX
HardSigmoid with alpha 1/6, beta 0.5; Keras 2's slope 0.2 is read off the
function), relu, linear (Affine 1, 0), elu (alpha 1), leaky_relu (slope 0.2),
softsign and softplus. The others (relu6, gelu, selu, silu, ...) are refused.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

# Keras's activation -> cylstm's (name, alpha, beta); hard_sigmoid's alpha is measured.
_ACTIVATIONS = {"tanh": ("tanh", 0.0, 0.0), "sigmoid": ("sigmoid", 0.0, 0.0),
                "hard_sigmoid": ("hard_sigmoid", None, 0.5), "relu": ("relu", 0.0, 0.0),
                "linear": ("affine", 1.0, 0.0), "elu": ("elu", 1.0, 0.0),
                "leaky_relu": ("leaky_relu", 0.2, 0.0), "softsign": ("softsign", 0.0, 0.0),
                "softplus": ("softplus", 0.0, 0.0)}
_HARD_SIGMOID_SLOPES = (1 / 6, 0.2)  # Keras 3, Keras 2


def parts_from_keras(layer: Any, dtype: Optional[DTypeLike] = None,
                     ) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """(config, state_dict) of a cylstm.LSTM with the weights and semantics of a
    Keras LSTM layer.

    Parameters
    ----------
    layer : a built Keras `LSTM` (or `RNN(LSTMCell)`), or a `Bidirectional`
        wrapper around one with merge_mode="concat".
    dtype : float32, float64 or None
        The model dtype; None keeps the layer's (float64 weights give a
        float64 model, anything else float32).

    Returns
    -------
    config : dict
        Keyword arguments of cylstm.LSTM: batch_first=True (unless the layer
        is time-major), bidirectional for a Bidirectional wrapper,
        bias=use_bias, and padding "carry" or "zeros" so that `model(x,
        lengths=...)` outputs what Keras outputs at masked steps (see the
        module docstring); go_backwards for a standalone go_backwards layer,
        activations (per direction) unless they are tanh and sigmoid.
    state_dict : dict of str to ndarray
        The weights in cylstm's (PyTorch's) names and layout.

    Raises
    ------
    NotImplementedError
        For settings cylstm does not compute: an activation or
        recurrent_activation that is no ONNX activation (see Activations in
        the module docstring), merge_mode other than "concat".
    TypeError, ValueError
        When `layer` is not a built LSTM layer.

    Notes
    -----
    Weights are copied: later changes to the layer do not reach the model.
    `recurrent_dropout` is kept for `forward_train` (cylstm draws one mask on h
    for the four gates, Keras one per gate). `stateful`, `dropout` (on the
    input x, which cylstm does not drop), `unroll`, `return_sequences` and
    `return_state` change no weight and are accepted (dropout acts only in
    training; a stateful layer's carried state is passed as `hx`).

    Examples
    --------
    >>> import keras
    >>> from cylstm.keras_io import parts_from_keras
    >>> layer = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))
    >>> layer.build((None, 5, 3))
    >>> config, state_dict = parts_from_keras(layer)
    >>> config["bidirectional"], config["padding"], config["batch_first"]
    (True, 'zeros', True)
    >>> {name: weight.shape for name, weight in state_dict.items()}
    {'weight_ih_l0': (16, 3), 'weight_hh_l0': (16, 4), 'bias_ih_l0': (16,), 'bias_hh_l0': (16,),
     'weight_ih_l0_reverse': (16, 3), 'weight_hh_l0_reverse': (16, 4),
     'bias_ih_l0_reverse': (16,), 'bias_hh_l0_reverse': (16,)}
    """
    halves = _directions(layer)
    activations = [_activations(name, half) for name, half in halves]
    weights = [_lstm_weights(name, half) for name, half in halves]
    input_size, hidden_size, bias = _common_shape(halves, weights)
    config = {
        "input_size": input_size, "hidden_size": hidden_size, "bias": bias,
        "batch_first": not _common_setting(halves, "time_major", False),
        "bidirectional": len(halves) == 2,
        "padding": _padding(halves[0][1]),
        "dtype": _model_dtype(weights) if dtype is None else dtype,
    }
    if len(halves) == 1 and _setting(layer, "go_backwards", False):
        config["go_backwards"] = True
    recurrent_dropout = _recurrent_dropout(halves)
    if recurrent_dropout:
        config["recurrent_dropout"] = recurrent_dropout
    if any(triple != _activations_of_plain_lstm() for triple in activations):
        config["activations"] = activations
    state = {}
    for direction, (kernel, recurrent_kernel, keras_bias) in enumerate(weights):
        state.update(_torch_layout(kernel, recurrent_kernel, keras_bias, direction))
    return config, state


def lengths_from_mask(mask: ArrayLike) -> NDArray[np.int64]:
    """The `lengths` (B,) of a Keras mask (B, T) that keeps each row's first steps.

    Raises
    ------
    ValueError
        For a mask cylstm cannot express: a row with a hole, a pre-padded row
        (masked steps before valid ones) or a fully masked row.

    Examples
    --------
    >>> from cylstm.keras_io import lengths_from_mask
    >>> lengths = lengths_from_mask([[1, 1, 1, 0], [1, 0, 0, 0]])
    >>> lengths.tolist(), lengths.dtype
    ([3, 1], dtype('int64'))
    >>> lengths_from_mask([[0, 1, 1, 1]])
    Traceback (most recent call last):
    ...
    ValueError: mask rows [0] do not keep a non-empty run of first steps; ...
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (batch, time), got shape {mask.shape}")
    mask = mask.astype(bool)
    lengths = mask.sum(axis=1)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    bad_rows = np.flatnonzero((mask != prefix).any(axis=1) | (lengths == 0))
    if bad_rows.size:
        raise ValueError(
            f"mask rows {bad_rows.tolist()} do not keep a non-empty run of first steps; "
            "cylstm's lengths express post-padded rows only (pad at the end: "
            "pad_sequences(..., padding='post'))")
    return lengths.astype(np.int64)


# -- reading the layer ---------------------------------------------------------

def _directions(layer):
    """[(name, keras LSTM layer)]: the layer itself, or a Bidirectional's two halves."""
    if not (hasattr(layer, "forward_layer") and hasattr(layer, "backward_layer")):
        return [("layer", layer)]
    merge_mode = getattr(layer, "merge_mode", "concat")
    if merge_mode != "concat":
        raise NotImplementedError(
            f"Bidirectional merge_mode={merge_mode!r}: cylstm concatenates the "
            "directions (merge_mode='concat') only")
    forward, backward = layer.forward_layer, layer.backward_layer
    if _setting(forward, "go_backwards", False) or not _setting(backward, "go_backwards", True):
        raise NotImplementedError(
            "Bidirectional whose forward_layer has go_backwards=True (or whose "
            "backward_layer has go_backwards=False): cylstm's first direction runs forwards")
    return [("forward_layer", forward), ("backward_layer", backward)]


def _setting(layer, name, default):
    """An attribute of the layer, or of its cell (keras.layers.RNN(LSTMCell) keeps it there)."""
    if hasattr(layer, name):
        return getattr(layer, name)
    return getattr(getattr(layer, "cell", None), name, default)


def _activations(name, layer):
    """cylstm's (f, g, h) of one Keras LSTM: (recurrent_activation, activation, activation)."""
    gate = _activation(name, "recurrent_activation", _setting(layer, "recurrent_activation",
                                                              "sigmoid"))
    cell = _activation(name, "activation", _setting(layer, "activation", "tanh"))
    return [gate, cell, cell]


def _activations_of_plain_lstm():
    return [list(_ACTIVATIONS["sigmoid"]), list(_ACTIVATIONS["tanh"]),
            list(_ACTIVATIONS["tanh"])]


def _activation(name, setting, function):
    """[name, alpha, beta] of a Keras activation (a function, or its name from a config);
    NotImplementedError naming it if it is no ONNX activation."""
    keras_name = function if isinstance(function, str) else getattr(function, "__name__", "")
    if keras_name not in _ACTIVATIONS:
        raise NotImplementedError(
            f"{name}.{setting}={keras_name or function!r}: cylstm computes the activations of "
            f"the ONNX LSTM, which in Keras are {sorted(_ACTIVATIONS)}")
    activation, alpha, beta = _ACTIVATIONS[keras_name]
    if alpha is None:
        alpha = _hard_sigmoid_slope(name, setting, function)
    return [activation, alpha, beta]


def _hard_sigmoid_slope(name, setting, function):
    """The slope of Keras's hard_sigmoid: 1/6 in Keras 3, 0.2 in Keras 2, read off the
    function at x = 1 (a name from a config is Keras 3's)."""
    if isinstance(function, str):
        return _HARD_SIGMOID_SLOPES[0]
    value = float(np.asarray(function(np.ones(1, np.float32))).reshape(-1)[0]) - 0.5
    for slope in _HARD_SIGMOID_SLOPES:
        if abs(value - slope) < 1e-6:
            return slope
    raise NotImplementedError(
        f"{name}.{setting}: this hard_sigmoid has slope {value:.6g} at x = 1; cylstm knows "
        "Keras 3's 1/6 and Keras 2's 0.2")


def _lstm_weights(name, layer):
    """(kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,) or None) as ndarrays."""
    if not hasattr(layer, "get_weights"):
        raise TypeError(
            f"expected a Keras LSTM or Bidirectional(LSTM) layer, got {type(layer).__name__}")
    weights = [np.asarray(w) for w in layer.get_weights()]
    if not weights:
        raise ValueError(
            f"{name} has no weights yet: build it first (call it on data, or "
            "layer.build((None, timesteps, features)))")
    use_bias = bool(_setting(layer, "use_bias", len(weights) == 3))
    units = _setting(layer, "units", None)
    expected_count = 3 if use_bias else 2
    if len(weights) != expected_count:
        raise ValueError(
            f"{name} is not a plain LSTM: expected {expected_count} weight arrays "
            f"(kernel, recurrent_kernel{', bias' if use_bias else ''}), got "
            f"{len(weights)} with shapes {[w.shape for w in weights]}")
    kernel, recurrent_kernel = weights[:2]
    bias = weights[2] if use_bias else None
    _check_weight_shapes(name, kernel, recurrent_kernel, bias, units)
    return kernel, recurrent_kernel, bias


def _check_weight_shapes(name, kernel, recurrent_kernel, bias, units):
    """ValueError unless the shapes are an LSTM's: (D, 4H), (H, 4H), (4H,) with H = units."""
    hidden = units if units is not None else (recurrent_kernel.shape or (0,))[0]
    gates = 4 * hidden
    if not (hidden > 0 and kernel.ndim == 2 and kernel.shape[0] > 0
            and kernel.shape[1] == gates and recurrent_kernel.shape == (hidden, gates)
            and (bias is None or bias.shape == (gates,))):
        got = f"kernel {kernel.shape}, recurrent_kernel {recurrent_kernel.shape}"
        if bias is not None:
            got += f", bias {bias.shape}"
        raise ValueError(
            f"{name} does not hold LSTM weights kernel (D, 4H), recurrent_kernel (H, 4H), "
            f"bias (4H,) with H = units = {hidden}: got {got}")


def _common_shape(halves, weights):
    """(input_size, hidden_size, bias) shared by every direction."""
    shapes = [(k.shape[0], r.shape[0], b is not None) for k, r, b in weights]
    if len(set(shapes)) != 1:
        described = "; ".join(
            f"{name}: input_size={d}, units={h}, use_bias={b}"
            for (name, _), (d, h, b) in zip(halves, shapes))
        raise NotImplementedError(
            f"the two halves of the Bidirectional differ ({described}); cylstm's "
            "directions share input_size, hidden_size and bias")
    return shapes[0]


def _recurrent_dropout(halves):
    """The layer's recurrent_dropout rate (the halves of a Bidirectional must agree)."""
    rates = {float(_setting(layer, "recurrent_dropout", 0.0) or 0.0) for _, layer in halves}
    if len(rates) != 1:
        raise NotImplementedError("the halves of the Bidirectional differ in recurrent_dropout")
    return rates.pop()


def _common_setting(halves, name, default):
    values = {bool(_setting(layer, name, default)) for _, layer in halves}
    if len(values) != 1:
        raise NotImplementedError(f"the halves of the Bidirectional differ in {name}")
    return values.pop()


def _padding(layer):
    """cylstm's padding that reproduces Keras' output at masked steps."""
    # Keras writes zeros at masked steps when zero_output_for_mask is set (Bidirectional
    # sets it on both halves when returning sequences), else repeats the last output.
    return "zeros" if _setting(layer, "zero_output_for_mask", False) else "carry"


def _model_dtype(weights):
    """float64 if every weight is float64, else float32 (Keras' float16 etc. included)."""
    if all(w.dtype == np.float64 for ws in weights for w in ws if w is not None):
        return np.float64
    return np.float32


def _torch_layout(kernel, recurrent_kernel, bias, direction):
    """One direction's {name: array} in cylstm's (PyTorch's) names and layout."""
    suffix = "_l0_reverse" if direction else "_l0"
    # Keras gate order i, f, c, o is torch's i, f, g, o: a transpose, no reordering.
    state = {f"weight_ih{suffix}": kernel.T, f"weight_hh{suffix}": recurrent_kernel.T}
    if bias is not None:
        state[f"bias_ih{suffix}"] = bias
        state[f"bias_hh{suffix}"] = np.zeros_like(bias)
    return state
