"""The Python face of cylstm: the LSTM class and the functional `lstm`.

Weights are plain ndarrays in PyTorch's layout (gate order i, f, g, o). This
module validates input, picks the dtype and memory layout, and hands the whole
sequence to the compiled kernel in cylstm/_lstm.pyx in one call.
"""
import numpy as np

from . import _lstm
from ._validation import (
    aligned_copy,
    as_kernel_array,
    as_real_array,
    check_dtype,
    check_shape,
    check_size,
)


def lstm(x, weight_ih, weight_hh, bias_ih=None, bias_hh=None, h0=None, c0=None):
    """One LSTM layer over a time-major sequence, for code that keeps its own arrays.

    Parameters
    ----------
    x : array_like, (T, B, D) or unbatched (T, D)
    weight_ih : array_like, (4H, D), gate order i, f, g, o
    weight_hh : array_like, (4H, H)
    bias_ih, bias_hh : array_like (4H,), optional
    h0, c0 : array_like (B, H) ((H,) for unbatched x), optional, zeros if omitted

    Returns
    -------
    output : (T, B, H) ((T, H) unbatched), the hidden state at every step
    h_n, c_n : (B, H) ((H,) unbatched), the final state

    The computation runs in weight_ih's dtype when that is float32 or float64,
    otherwise in float64; everything else is converted to it. No argument is
    modified.
    """
    weight_ih = np.asarray(weight_ih)
    dtype = weight_ih.dtype if weight_ih.dtype in (np.float32, np.float64) else np.float64
    weight_ih = as_real_array("weight_ih", weight_ih, dtype)
    weight_hh = as_real_array("weight_hh", weight_hh, dtype)
    if weight_ih.ndim != 2 or weight_ih.shape[0] % 4 or weight_ih.shape[0] == 0:
        raise ValueError(
            f"weight_ih must have shape (4*hidden_size, input_size), got {weight_ih.shape}")
    gates, input_size = weight_ih.shape
    hidden_size = gates // 4
    check_shape("weight_hh", weight_hh, (gates, hidden_size))
    bias = _combined_bias(bias_ih, bias_hh, gates, dtype)

    x = as_real_array("x", x, dtype)
    unbatched = _check_input(x, input_size)
    state_shape = (hidden_size,) if unbatched else (x.shape[1], hidden_size)
    h0 = _initial_state("h0", h0, state_shape, dtype)
    c0 = _initial_state("c0", c0, state_shape, dtype)
    if unbatched:
        x, h0, c0 = x[:, None, :], h0[None], c0[None]

    output, h_n, c_n = _run_layer(x, weight_ih, weight_hh, bias, h0, c0, batch_first=False)
    if unbatched:
        return output[:, 0], h_n[0], c_n[0]
    return output, h_n, c_n


class LSTM:
    """A single-layer LSTM with torch.nn.LSTM's semantics, on NumPy arrays.

    Parameters
    ----------
    input_size, hidden_size : int
        D, the features per time step, and H, the size of the hidden state.
    bias : bool
        Whether the layer has `bias_ih_l0` and `bias_hh_l0`.
    batch_first : bool
        Input and output are (B, T, features) instead of (T, B, features).
    dtype : float32 or float64
        The dtype of the weights and of every computation.
    seed : int, np.random.Generator or None
        Weights start U(-1/sqrt(H), 1/sqrt(H)) from this seed, like torch's.

    Parameters are ndarray attributes named as PyTorch names them:
    `weight_ih_l0` (4H, D), `weight_hh_l0` (4H, H), `bias_ih_l0` and
    `bias_hh_l0` (4H,), gate order i, f, g, o. They may be changed in place.
    """

    def __init__(self, input_size, hidden_size, *, bias=True, batch_first=False,
                 dtype=np.float32, seed=None):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self._parameter_shapes().items():
            setattr(self, name, aligned_copy(rng.uniform(-bound, bound, shape), self.dtype))

    def _parameter_shapes(self):
        """{name: shape} of every parameter, in PyTorch's order."""
        gates = 4 * self.hidden_size
        shapes = {
            "weight_ih_l0": (gates, self.input_size),
            "weight_hh_l0": (gates, self.hidden_size),
        }
        if self.bias:
            shapes["bias_ih_l0"] = (gates,)
            shapes["bias_hh_l0"] = (gates,)
        return shapes

    def __call__(self, x, hx=None):
        """Run the sequence `x`; return `(output, (h_n, c_n))`.

        x is (T, B, D), (B, T, D) with batch_first, or unbatched (T, D).
        hx = (h0, c0), each (1, B, H) ((1, H) unbatched), zeros if omitted.
        output is (T, B, H) ((B, T, H) with batch_first, (T, H) unbatched);
        h_n and c_n are (1, B, H) ((1, H) unbatched).
        """
        x = as_real_array("x", x, self.dtype)
        unbatched = _check_input(x, self.input_size)
        batch = 1 if unbatched else x.shape[0 if self.batch_first else 1]
        h0, c0 = self._initial_states(hx, batch, unbatched)
        if unbatched:
            x = x[:, None, :]
        w_ih, w_hh, bias = self._kernel_parameters()
        batch_first = self.batch_first and not unbatched
        output, h_n, c_n = _run_layer(x, w_ih, w_hh, bias, h0, c0, batch_first)
        if unbatched:
            return output[:, 0], (h_n, c_n)
        return output, (h_n[None], c_n[None])

    def _initial_states(self, hx, batch, unbatched):
        """(h0, c0) as fresh (B, H) arrays, from hx or zeros."""
        shape = (batch, self.hidden_size)
        if hx is None:
            return np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx must be a tuple (h0, c0), got {type(hx).__name__}")
        expected = (1, self.hidden_size) if unbatched else (1, batch, self.hidden_size)
        states = []
        for name, value in zip(("h0", "c0"), hx):
            state = check_shape(f"hx[{len(states)}] ({name})",
                                as_real_array(name, value, self.dtype), expected)
            states.append(state.reshape(shape))
        return states

    def _kernel_parameters(self):
        """(w_ih, w_hh, b_ih + b_hh) as aligned contiguous arrays of the model dtype."""
        shapes = self._parameter_shapes()
        params = {}
        for name, shape in shapes.items():
            value = getattr(self, name)
            params[name] = check_shape(name, as_real_array(name, value, self.dtype), shape)
        if self.bias:
            bias = params["bias_ih_l0"] + params["bias_hh_l0"]
        else:
            bias = np.zeros(4 * self.hidden_size, self.dtype)
        return (as_kernel_array(params["weight_ih_l0"], self.dtype),
                as_kernel_array(params["weight_hh_l0"], self.dtype),
                bias)

    def state_dict(self):
        """Copies of the parameters, {name: ndarray}, in PyTorch's names and order."""
        return {name: np.array(getattr(self, name)) for name in self._parameter_shapes()}

    def load_state_dict(self, state_dict):
        """Set the parameters from a mapping of names to arrays (or torch tensors).

        Names and shapes must match exactly; values are converted to the model
        dtype and copied. Nothing is changed unless every entry is valid.
        """
        shapes = self._parameter_shapes()
        missing = [name for name in shapes if name not in state_dict]
        unexpected = [name for name in state_dict if name not in shapes]
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not match the model: missing {missing}, "
                f"unexpected {unexpected}; expected the names {list(shapes)}")
        loaded = {}
        for name, shape in shapes.items():
            value = as_real_array(f"state_dict[{name!r}]", state_dict[name], self.dtype)
            loaded[name] = check_shape(f"state_dict[{name!r}]", value, shape)
        for name, value in loaded.items():
            setattr(self, name, aligned_copy(value, self.dtype))

    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        # Unpickled arrays land at any address; restore the aligned copies.
        self.__dict__.update(state)
        for name in self._parameter_shapes():
            value = getattr(self, name)
            setattr(self, name, aligned_copy(value, value.dtype))

    def __repr__(self):
        options = "".join(
            f", {key}={value}" for key, value, default in (
                ("bias", self.bias, True), ("batch_first", self.batch_first, False))
            if value != default)
        return (f"LSTM({self.input_size}, {self.hidden_size}{options}, "
                f"dtype={self.dtype.name})")


def _check_input(x, input_size):
    """Check x's rank and feature size; return whether it is unbatched (2-D)."""
    if x.ndim not in (2, 3):
        raise ValueError(
            f"x must be 3-D (batched) or 2-D (unbatched), got {x.ndim}-D with shape {x.shape}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"x must have input_size={input_size} features in its last axis, "
            f"got shape {x.shape}")
    return x.ndim == 2


def _initial_state(name, value, shape, dtype):
    """A fresh, writable copy of a state argument, or zeros."""
    if value is None:
        return np.zeros(shape, dtype)
    return check_shape(name, as_real_array(name, value, dtype), shape)


def _combined_bias(bias_ih, bias_hh, gates, dtype):
    """b_ih + b_hh as one (4H,) array; a missing bias counts as zeros."""
    bias = np.zeros(gates, dtype)
    for name, value in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if value is not None:
            bias += check_shape(name, as_real_array(name, value, dtype), (gates,))
    return bias


def _run_layer(x, w_ih, w_hh, bias, h0, c0, batch_first):
    """Run the kernel on a validated 3-D x; return output, h_n, c_n (B, H).

    x is (T, B, D), or (B, T, D) when batch_first; the output has the same
    layout. Neither x nor the states passed in are written to.
    """
    dtype = w_hh.dtype
    x = np.ascontiguousarray(x)
    h = np.array(h0, dtype=dtype, order="C")  # the kernel updates its state in place
    c = np.array(c0, dtype=dtype, order="C")
    hidden_size = w_hh.shape[1]
    if batch_first:
        batch, steps = x.shape[:2]
        output = np.empty((batch, steps, hidden_size), dtype)
        x_time_major, out_time_major = x.transpose(1, 0, 2), output.transpose(1, 0, 2)
    else:
        output = np.empty(x.shape[:2] + (hidden_size,), dtype)
        x_time_major, out_time_major = x, output
    _lstm.forward_layer(x_time_major, as_kernel_array(w_ih, dtype),
                        as_kernel_array(w_hh, dtype), bias, h, c, out_time_major)
    return output, h, c
