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
second, from `zero_output_for_mask`. One Keras quirk has no cylstm
counterpart: a standalone LSTM(zero_output_for_mask=True,
return_sequences=False) returns zeros as the last output of a padded row
(cylstm's h_n[0] holds its real last output). Masks with holes, pre-padded
rows (Keras' `pad_sequences` pads at the front by default) and fully masked
rows have no `lengths` equivalent.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray


_EXPECTED_ACTIVATIONS = {"activation": "tanh", "recurrent_activation": "sigmoid"}


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
        module docstring).
    state_dict : dict of str to ndarray
        The weights in cylstm's (PyTorch's) names and layout.

    Raises
    ------
    NotImplementedError
        For settings cylstm does not compute: activation other than tanh,
        recurrent_activation other than sigmoid, go_backwards=True on a
        standalone layer, merge_mode other than "concat".
    TypeError, ValueError
        When `layer` is not a built LSTM layer.

    Notes
    -----
    Weights are copied: later changes to the layer do not reach the model.
    `stateful`, `dropout`, `recurrent_dropout`, `unroll`, `return_sequences`
    and `return_state` change no weight and are accepted (dropout acts only in
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
    for name, half in halves:
        _check_supported(name, half)
    weights = [_lstm_weights(name, half) for name, half in halves]
    input_size, hidden_size, bias = _common_shape(halves, weights)
    config = {
        "input_size": input_size, "hidden_size": hidden_size, "bias": bias,
        "batch_first": not _common_setting(halves, "time_major", False),
        "bidirectional": len(halves) == 2,
        "padding": _padding(halves[0][1]),
        "dtype": _model_dtype(weights) if dtype is None else dtype,
    }
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
        if _setting(layer, "go_backwards", False):
            raise NotImplementedError(
                "go_backwards=True: Keras runs the sequence backwards and returns the "
                "outputs time-reversed; cylstm has no reverse-only layer. Use a "
                "Bidirectional wrapper, or convert a copy with go_backwards=False "
                "(same weights) and run it on x[:, ::-1] (unmasked input only)")
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


def _activation_name(function):
    """'tanh' for keras.activations.tanh, a string as it is (from a config)."""
    if isinstance(function, str):
        return function
    return getattr(function, "__name__", repr(function))


def _check_supported(name, layer):
    """NotImplementedError naming the first setting whose maths cylstm does not run."""
    for setting, expected in _EXPECTED_ACTIVATIONS.items():
        actual = _activation_name(_setting(layer, setting, expected))
        if actual != expected:
            raise NotImplementedError(
                f"{name}.{setting}={actual!r}: cylstm computes {setting}={expected!r} only")


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
