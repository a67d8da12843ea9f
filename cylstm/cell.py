"""One LSTM step with torch.nn.LSTMCell's semantics: cylstm.LSTMCell.

The step is the compiled layer kernel (cylstm/_lstm.pyx: forward_layer, and
backward_layer for training) run over one time step, so it computes what a
one-step cylstm.LSTM computes, with less bookkeeping per call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _lstm, _walk
from ._params import checked_parameter, some
from ._validation import aligned_copy, as_real_array, check_dtype, check_flag, check_size

if TYPE_CHECKING:
    from ._typing import FloatArray, SeedLike, StateLike

CONFIG_KEYS = ("input_size", "hidden_size", "bias", "dtype")


class LSTMCell:
    """One LSTM step, h_1, c_1 = cell(x, (h_0, c_0)), as torch.nn.LSTMCell.

    Parameters
    ----------
    input_size, hidden_size : int
        D, the features of x, and H, the size of h and c.
    bias : bool
        Whether the cell has `bias_ih` and `bias_hh`.
    dtype : float32 or float64
        The dtype of the weights and of every computation.
    seed : int, np.random.Generator or None
        Weights start U(-1/sqrt(H), 1/sqrt(H)) from this seed, like torch's.

    Parameters are ndarray attributes named as torch names them:
    `weight_ih` (4H, D), `weight_hh` (4H, H), `bias_ih` and `bias_hh` (4H,),
    gate order i, f, g, o; an array assigned to one is checked and stored in
    the cell's dtype. The configuration is read-only.

    Examples
    --------
    >>> import numpy as np
    >>> import cylstm
    >>> cell = cylstm.LSTMCell(3, 4, seed=0, dtype=np.float64)
    >>> cell
    LSTMCell(3, 4, dtype=float64)
    >>> x = np.ones((6, 2, 3))                  # (T, B, D): the time loop is the caller's
    >>> h, c = np.zeros((2, 4)), np.zeros((2, 4))
    >>> for x_t in x:
    ...     h, c = cell(x_t, (h, c))
    >>> model = cylstm.LSTM(3, 4, dtype=np.float64)
    >>> model.load_state_dict({name + "_l0": value for name, value in cell.state_dict().items()})
    >>> np.allclose(h, model(x)[1][0][0], rtol=0, atol=1e-12)
    True
    """

    _config: dict[str, Any]
    _shapes: dict[str, tuple[int, ...]]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype: DTypeLike = np.float32, seed: SeedLike = None) -> None:
        self._start(check_size("input_size", input_size), check_size("hidden_size", hidden_size),
                    check_flag("bias", bias), check_dtype(dtype))
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self._shapes.items():
            self._store(name, rng.uniform(-bound, bound, shape))

    def _start(self, input_size, hidden_size, bias, dtype):
        gates = 4 * hidden_size
        shapes = {"weight_ih": (gates, input_size), "weight_hh": (gates, hidden_size)}
        if bias:
            shapes.update(bias_ih=(gates,), bias_hh=(gates,))
        object.__setattr__(self, "_config", dict(input_size=input_size, hidden_size=hidden_size,
                                                 bias=bias, dtype=dtype))
        object.__setattr__(self, "_shapes", shapes)

    input_size = property(lambda self: self._config["input_size"], doc="D, features of x.")
    hidden_size = property(lambda self: self._config["hidden_size"], doc="H, size of h and c.")
    bias = property(lambda self: self._config["bias"], doc="Whether the cell has biases.")
    dtype = property(lambda self: self._config["dtype"], doc="The dtype of the weights.")

    # -- parameters: checked on assignment -----------------------------------

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> FloatArray: ...

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CONFIG_KEYS:
            raise AttributeError(f"{name} is fixed when the cell is made; build a new LSTMCell")
        if name in self._shapes:
            self._store(name, value)
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._shapes:
            raise AttributeError(f"{name} is a parameter of the cell and cannot be deleted")
        object.__delattr__(self, name)

    def _store(self, name: str, value: ArrayLike) -> None:
        value = checked_parameter(name, value, self._shapes[name], self.dtype)
        if not (value.flags.c_contiguous and value.ctypes.data % 64 == 0):
            value = aligned_copy(value, self.dtype)  # the kernel reads w_hh from a cache line
        object.__setattr__(self, name, value)

    def state_dict(self) -> dict[str, FloatArray]:
        """Copies of the parameters, {name: ndarray}, in torch's names and order."""
        return {name: np.array(getattr(self, name)) for name in self._shapes}

    def load_state_dict(self, state_dict: Any) -> None:
        """Set every parameter from a mapping of torch's names to arrays or tensors.

        Names and shapes must match exactly; nothing changes unless all are valid.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of parameter names to arrays, "
                            f"got {type(state_dict).__name__}")
        missing = [name for name in self._shapes if name not in state_dict]
        unexpected = [name for name in state_dict if name not in self._shapes]
        if missing or unexpected:
            raise ValueError(f"state_dict does not match the cell: missing {some(missing)}, "
                             f"unexpected {some(unexpected)}; expected {list(self._shapes)}")
        checked = {name: checked_parameter(f"state_dict[{name!r}]", state_dict[name], shape,
                                           self.dtype) for name, shape in self._shapes.items()}
        for name, value in checked.items():
            object.__setattr__(self, name, aligned_copy(value, self.dtype))

    # -- one step -----------------------------------------------------------

    def __call__(self, x: ArrayLike, hx: StateLike = None) -> tuple[FloatArray, FloatArray]:
        """One step: `(h_1, c_1)` from x (B, D) and hx = (h_0, c_0), each (B, H).

        Parameters
        ----------
        x : array_like
            (B, D), or unbatched (D,).
        hx : (h_0, c_0), optional
            Each (B, H) ((H,) unbatched); zeros if omitted.

        Returns
        -------
        (h_1, c_1) : tuple of ndarray
            New arrays in the shapes of h_0 and c_0.

        Raises
        ------
        TypeError, ValueError
            For an argument of the wrong type or shape, naming it.
        """
        x_rows, h, c, unbatched = self._prepare(x, hx)
        out = np.empty((1, h.shape[0], self.hidden_size), self.dtype)
        _lstm.forward_layer(x_rows, self.weight_ih, self.weight_hh, self._bias(), h, c, out)
        return (h[0], c[0]) if unbatched else (h, c)

    def forward_train(self, x: ArrayLike, hx: StateLike = None,
                      ) -> tuple[FloatArray, FloatArray, Any]:
        """The step, keeping what backpropagation needs.

        Returns
        -------
        h_1, c_1
            As from `cell(x, hx)`.
        backward : callable
            `backward(grad_h_1, grad_c_1=None)` returns `(grad_x, (grad_h_0,
            grad_c_0), grads)` in the shapes of x, h_0, c_0 and
            {parameter name: gradient}; once.

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> cell = cylstm.LSTMCell(3, 4, seed=0, dtype=np.float64)
        >>> h, c, backward = cell.forward_train(np.ones(3))
        >>> grad_x, (grad_h, grad_c), grads = backward(np.ones(4))
        >>> grad_x.shape, grad_h.shape, grads["weight_hh"].shape
        ((3,), (4,), (16, 4))
        """
        x_rows, h, c, unbatched = self._prepare(x, hx)
        x_rows = np.array(x_rows, order="C")  # own copies: the caller may change them
        h0, c0 = h.copy(), c.copy()
        w_ih, w_hh = np.array(self.weight_ih), np.array(self.weight_hh)
        batch, hidden = h.shape[0], self.hidden_size
        out = np.empty((1, batch, hidden), self.dtype)
        act = np.zeros((1, batch, 4 * hidden), self.dtype)
        cells = np.empty((1, batch, hidden), self.dtype)
        _lstm.forward_layer(x_rows, w_ih, w_hh, self._bias(), h, c, out, keep_act=act,
                            keep_c=cells)
        used: list[bool] = []

        def backward(grad_h_1: ArrayLike, grad_c_1: Optional[ArrayLike] = None):
            if used:
                raise RuntimeError("backward() can run once per forward_train()")
            expected = (hidden,) if unbatched else (batch, hidden)
            grad_h = self._checked("grad_h_1", grad_h_1, expected)
            grad_c = (np.zeros_like(c) if grad_c_1 is None
                      else self._checked("grad_c_1", grad_c_1, expected))
            used.append(True)
            grad_x = np.zeros_like(x_rows)
            grad_h0, grad_c0 = np.empty_like(h0), np.empty_like(c0)
            grads = {name: np.empty(shape, self.dtype) for name, shape in self._shapes.items()
                     if name != "bias_hh"}
            bias = grads.pop("bias_ih", np.empty(4 * hidden, self.dtype))
            _lstm.backward_layer(x_rows, w_ih, w_hh, h0, c0, out, act, cells, np.zeros_like(out),
                                 grad_h, grad_c, grad_x, grad_h0, grad_c0, grads["weight_ih"],
                                 grads["weight_hh"], bias)
            if self.bias:  # b_ih and b_hh enter as their sum: equal gradients
                grads.update(bias_ih=bias, bias_hh=bias.copy())
            if unbatched:
                return grad_x[0, 0], (grad_h0[0], grad_c0[0]), grads
            return grad_x[0], (grad_h0, grad_c0), grads

        if unbatched:
            return h[0], c[0], backward
        return h, c, backward

    def _prepare(self, x, hx):
        """(x as a (1, B, D) kernel-ready view, fresh C-order h and c (B, H), unbatched)."""
        x = as_real_array("x", x, self.dtype)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (B, {self.input_size}) or unbatched "
                             f"({self.input_size},), got shape {x.shape}")
        unbatched = x.ndim == 1
        batch = 1 if unbatched else x.shape[0]
        expected = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        if hx is None:
            h = np.zeros((batch, self.hidden_size), self.dtype)
            c = np.zeros((batch, self.hidden_size), self.dtype)
        else:
            _walk.check_state_pair("hx", hx)
            h = self._checked("hx[0] (h_0)", hx[0], expected)
            c = self._checked("hx[1] (c_0)", hx[1], expected)
        return _walk.kernel_input(x.reshape(1, batch, self.input_size)), h, c, unbatched

    def _checked(self, argument, value, expected):
        """`value` checked against `expected` as a fresh C-order (B, H) array."""
        array = as_real_array(argument, value, self.dtype)
        if array.shape != expected:
            raise ValueError(f"{argument} must have shape {expected}, got {array.shape}")
        return np.array(array, order="C").reshape(-1, self.hidden_size)

    def _bias(self):
        if self.bias:
            return self.bias_ih + self.bias_hh
        return np.zeros(4 * self.hidden_size, self.dtype)

    # -- torch ------------------------------------------------------------

    @classmethod
    def from_torch(cls, source: Any, dtype: Optional[DTypeLike] = None) -> LSTMCell:
        """From a torch.nn.LSTMCell or its state dict (tensors or arrays).

        The dtype defaults to float64 for float64 weights, else float32.

        Examples
        --------
        >>> import numpy as np
        >>> import torch
        >>> import cylstm
        >>> _ = torch.manual_seed(0)
        >>> module = torch.nn.LSTMCell(3, 4)
        >>> cell = cylstm.LSTMCell.from_torch(module)
        >>> x = np.ones((2, 3), np.float32)
        >>> with torch.no_grad():
        ...     h, c = module(torch.from_numpy(x))
        >>> np.allclose(cell(x)[0], h.numpy(), rtol=0, atol=1e-6)
        True
        """
        if callable(getattr(source, "state_dict", None)):
            if type(source).__name__ != "LSTMCell":
                hint = (" (a sequence model: use cylstm.LSTM.from_torch)"
                        if getattr(source, "mode", None) == "LSTM" else "")
                raise TypeError(f"source must be a torch.nn.LSTMCell or its state dict, got "
                                f"a {type(source).__name__}{hint}")
            source = source.state_dict()
        if not hasattr(source, "keys") or "weight_ih" not in source:
            raise TypeError("source must be a torch.nn.LSTMCell or its state dict "
                            f"(weight_ih, weight_hh, ...), got {type(source).__name__}")
        shape = tuple(getattr(source["weight_ih"], "shape", np.shape(source["weight_ih"])))
        if len(shape) != 2 or shape[0] % 4 or not shape[0] or not shape[1]:
            raise ValueError("state_dict['weight_ih'] must have shape (4 * hidden_size, "
                             f"input_size) with both positive, got {shape}")
        if dtype is None:
            dtype = (np.float64 if str(source["weight_ih"].dtype).endswith("float64")
                     else np.float32)
        cell = cls.__new__(cls)
        cell._start(shape[1], shape[0] // 4, "bias_ih" in source, check_dtype(dtype))
        cell.load_state_dict(source)
        return cell

    def to_torch(self) -> Any:
        """A torch.nn.LSTMCell holding these weights, in this dtype; needs torch."""
        import torch

        module = torch.nn.LSTMCell(self.input_size, self.hidden_size, bias=self.bias,
                                   dtype=getattr(torch, self.dtype.name))
        module.load_state_dict({name: torch.from_numpy(value)
                                for name, value in self.state_dict().items()})
        return module

    # -- pickling: a pickle is untrusted data ------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"config": {**self._config, "dtype": self.dtype.name},
                "parameters": self.state_dict()}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict) \
                or set(state["config"]) != set(CONFIG_KEYS):
            raise TypeError(f"an LSTMCell pickle state must be a dict with a config of "
                            f"{CONFIG_KEYS}")
        config = state["config"]
        self._start(check_size("input_size", config["input_size"]),
                    check_size("hidden_size", config["hidden_size"]),
                    check_flag("bias", config["bias"]), check_dtype(config["dtype"]))
        self.load_state_dict(state.get("parameters") or {})

    def __repr__(self) -> str:
        bias = "" if self.bias else ", bias=False"
        return f"LSTMCell({self.input_size}, {self.hidden_size}{bias}, dtype={self.dtype.name})"
