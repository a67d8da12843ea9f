"""The functional form: one LSTM layer for code that keeps its own arrays."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from . import _walk
from ._params import make_config
from ._validation import as_real_array, check_shape

if TYPE_CHECKING:
    from ._typing import FloatArray


def lstm(x: ArrayLike, weight_ih: ArrayLike, weight_hh: ArrayLike,
         bias_ih: Optional[ArrayLike] = None, bias_hh: Optional[ArrayLike] = None,
         h0: Optional[ArrayLike] = None, c0: Optional[ArrayLike] = None,
         ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One LSTM layer over a time-major sequence, for code that keeps its own arrays.

    The computation runs in weight_ih's dtype when that is float32 or float64,
    otherwise in float64; everything else is converted to it. No argument is
    modified.

    Parameters
    ----------
    x : array_like, (T, B, D) or unbatched (T, D)
        The input sequence, time first.
    weight_ih : array_like, (4H, D)
        Input weights, gate order i, f, g, o.
    weight_hh : array_like, (4H, H)
        Recurrent weights.
    bias_ih, bias_hh : array_like, (4H,), optional
        Biases; a missing one counts as zeros.
    h0, c0 : array_like, (B, H) ((H,) for unbatched x), optional
        The initial state; zeros if omitted.

    Returns
    -------
    output : ndarray, (T, B, H) ((T, H) unbatched)
        The hidden state at every step.
    h_n, c_n : ndarray, (B, H) ((H,) unbatched)
        The final state.

    Raises
    ------
    ValueError
        For shapes that do not fit one layer, naming the argument.
    TypeError
        For values that are not real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> import cylstm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((5, 2, 3))         # T=5 steps, B=2 rows, D=3
    >>> w_ih = rng.uniform(-0.5, 0.5, (16, 3))     # 4H x D with H=4
    >>> w_hh = rng.uniform(-0.5, 0.5, (16, 4))
    >>> output, h_n, c_n = cylstm.lstm(x, w_ih, w_hh)
    >>> output.shape, h_n.shape, output.dtype
    ((5, 2, 4), (2, 4), dtype('float64'))
    >>> np.array_equal(output[-1], h_n)
    True
    >>> np.round(h_n[0], 4)
    array([-0.0612,  0.098 ,  0.0236, -0.0623])
    """
    weight_ih = as_real_array("weight_ih", weight_ih, None)
    dtype = weight_ih.dtype
    weight_hh = as_real_array("weight_hh", weight_hh, dtype)
    if weight_ih.ndim != 2 or weight_ih.shape[0] % 4 or weight_ih.shape[0] == 0:
        raise ValueError(
            f"weight_ih must have shape (4*hidden_size, input_size), got {weight_ih.shape}")
    gates, input_size = weight_ih.shape
    hidden_size = gates // 4
    check_shape("weight_hh", weight_hh, (gates, hidden_size))
    bias = _combined_bias(bias_ih, bias_hh, gates, dtype)

    x = as_real_array("x", x, dtype)
    unbatched = _walk.check_input(x, input_size)
    state_shape = (hidden_size,) if unbatched else (x.shape[1], hidden_size)
    h = _initial_state("h0", h0, state_shape, dtype).reshape(-1, hidden_size)
    c = _initial_state("c0", c0, state_shape, dtype).reshape(-1, hidden_size)
    weights = [[(_c_order(weight_ih), _c_order(weight_hh), bias, None, None, None)]]
    config = make_config(input_size, hidden_size, dtype=dtype)
    output, _, _ = _walk.walk(config, weights, x[:, None, :] if unbatched else x, [h], [c])
    if unbatched:
        return output[:, 0], h[0], c[0]
    return output, h, c


def _c_order(array: FloatArray) -> FloatArray:
    """`array` if it is C-contiguous and aligned, else such a copy."""
    if array.flags.c_contiguous and array.flags.aligned:
        return array
    return np.array(array, order="C")


def _initial_state(name: str, value: Optional[ArrayLike], shape: tuple[int, ...],
                   dtype: np.dtype[Any]) -> FloatArray:
    """A fresh, writable copy of a state argument, or zeros."""
    if value is None:
        return np.zeros(shape, dtype)
    return np.array(check_shape(name, as_real_array(name, value, dtype), shape), order="C")


def _combined_bias(bias_ih: Optional[ArrayLike], bias_hh: Optional[ArrayLike], gates: int,
                   dtype: np.dtype[Any]) -> FloatArray:
    """b_ih + b_hh as one (4H,) array; a missing bias counts as zeros."""
    bias = np.zeros(gates, dtype)
    for name, value in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if value is not None:
            bias += check_shape(name, as_real_array(name, value, dtype), (gates,))
    return bias
