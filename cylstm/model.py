"""The Python face of cylstm: the LSTM class.

Weights are plain ndarrays in PyTorch's layout (gate order i, f, g, o), checked
when they are assigned. The walk over layers and directions is cylstm/_walk.py;
names and shapes are cylstm/_params.py; the file and framework formats
translate to and from (config, state_dict) and are called from here.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _parallel, _walk, keras_io, onnx_export, onnx_io, torch_io, training
from ._params import (
    CONFIG_KEYS,
    Config,
    checked_parameter,
    checked_state_dict,
    config_from_dict,
    make_config,
    parameter_shapes,
)
from ._validation import aligned_copy, check_size
from .stream import LSTMStream

if TYPE_CHECKING:
    from ._typing import FloatArray, SeedLike, State, StateDictLike, StateLike
    from .training import Backward


class LSTM:
    """A multi-layer LSTM with torch.nn.LSTM's semantics, on NumPy arrays.

    Parameters
    ----------
    input_size, hidden_size : int
        D, the features per time step, and H, the size of the cell state.
    num_layers : int
        Stacked layers; layer k > 0 reads the output of layer k - 1.
    bias : bool
        Whether the layers have `bias_ih_l{k}` and `bias_hh_l{k}`.
    batch_first : bool
        Input and output are (B, T, features) instead of (T, B, features).
    bidirectional : bool
        Each layer also runs backwards; outputs of both directions are
        concatenated along the feature axis, forward first.
    proj_size : int
        If > 0, h_t = W_hr (o_t * tanh(c_t)) has proj_size features (LSTMP).
    padding : "zeros" or "carry"
        What a sequence shorter than the batch (see `lengths`) outputs at its
        padded steps: zeros, like PyTorch's packed sequences and ONNX's
        sequence_lens, or its last valid output carried forward, like a
        Keras layer with masking.
    dtype : float32 or float64
        The dtype of the weights and of every computation.
    seed : int, np.random.Generator or None
        Weights start U(-1/sqrt(H), 1/sqrt(H)) from this seed, like torch's.
    reverse : bool
        One direction that reads each sequence from its last valid step to
        its first; the output stays in input order (ONNX direction="reverse").
    go_backwards : bool
        Keras's go_backwards: each sequence read from its end, the output in
        the order the steps were processed.
    peepholes : bool
        The gates i, f (from c_{t-1}) and o (from c_t) also see the cell
        state through `weight_peephole_l{k}` (3H,), order i, f, o (ONNX's P).
    clip : float or None
        Pre-activations are clipped to [-clip, clip] (ONNX's clip).
    input_forget : bool
        Coupled input and forget gates: f = 1 - i (ONNX's input_forget).
    activations : None or sequence
        The nonlinearities (f, g, h) in ONNX's sense: f of the gates i, f, o,
        g of the candidate, h of the cell state; default sigmoid, tanh, tanh.
        Names as ONNX or Keras spell them ("HardSigmoid", "hard_sigmoid"), or
        (name, alpha, beta); one triple for every direction or one per direction.
    dropout : float
        Dropout between layers in `forward_train` (torch's dropout); never in a call.
    recurrent_dropout : float
        Keras's recurrent dropout in `forward_train`: a mask on h, fixed over
        the sequence, before the recurrent product; never in a call.
    num_threads : int or None
        None: one call runs one time loop and BLAS uses its own threads (as
        threadpoolctl allows). k > 1: the batch is split into k parts, each
        on its own thread with single-threaded BLAS; a bidirectional model
        with k = 2 (or at batch 1) runs its two directions side by side
        instead, with the same numbers as one thread. Needs threadpoolctl,
        else ignored. A split batch agrees up to rounding (BLAS may round a
        smaller batch differently).
        On idle cores both scale alike; when other processes keep cores busy,
        the split degrades gracefully where BLAS threads, which wait for each
        other at every step, can run several times slower than one thread.

    Parameters are ndarray attributes named as PyTorch names them, for layer k:
    `weight_ih_l{k}` (4H, D_k), `weight_hh_l{k}` (4H, H_out), `bias_ih_l{k}`
    and `bias_hh_l{k}` (4H,), `weight_hr_l{k}` (proj_size, H), with suffix
    `_reverse` for the backward direction; gate order i, f, g, o; H_out is
    proj_size if set, else H. They may be changed in place; an array assigned
    to one is checked (its shape, real values) and stored in the model dtype.
    The configuration is read-only: make a new model for another.

    Raises
    ------
    TypeError, ValueError
        For a configuration argument of the wrong type or value, naming it.

    Examples
    --------
    >>> import numpy as np
    >>> import cylstm
    >>> model = cylstm.LSTM(3, 4, num_layers=2, seed=0)
    >>> model
    LSTM(3, 4, num_layers=2, dtype=float32)
    >>> model.weight_ih_l1.shape, model.weight_ih_l1.dtype
    ((16, 4), dtype('float32'))
    >>> output, (h_n, c_n) = model(np.ones((5, 2, 3), np.float32))
    >>> output.shape, h_n.shape, c_n.shape
    ((5, 2, 4), (2, 2, 4), (2, 2, 4))
    >>> model.bias = False
    Traceback (most recent call last):
    ...
    AttributeError: bias is fixed when the model is made; build a new LSTM for another ...
    """

    _config: Config
    _num_threads: Optional[int]
    _weight_names: tuple
    _common_case: bool

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bias: bool = True, batch_first: bool = False, bidirectional: bool = False,
                 proj_size: int = 0, padding: str = "zeros", dtype: DTypeLike = np.float32,
                 seed: SeedLike = None, num_threads: Optional[int] = None,
                 reverse: bool = False, go_backwards: bool = False, peepholes: bool = False,
                 clip: Optional[float] = None, input_forget: bool = False,
                 activations: Any = None, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        config = make_config(input_size, hidden_size, num_layers, bias=bias,
                             batch_first=batch_first, bidirectional=bidirectional,
                             proj_size=proj_size, padding=padding, dtype=dtype,
                             reverse=reverse, go_backwards=go_backwards, peepholes=peepholes,
                             clip=clip, input_forget=input_forget, activations=activations,
                             dropout=dropout, recurrent_dropout=recurrent_dropout)
        self._start(config, num_threads)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in parameter_shapes(config).items():
            self._store(name, rng.uniform(-bound, bound, shape))

    def _start(self, config: Config, num_threads: Optional[int]) -> None:
        object.__setattr__(self, "_config", config)
        # What every call reads the weights by (the walk's kernel_weights), and
        # whether calls may take the walk's shorter path.
        object.__setattr__(self, "_weight_names", _walk.weight_names(config))
        object.__setattr__(self, "_common_case", _walk.common_case(config))
        self.num_threads = num_threads

    @classmethod
    def _from_parts(cls, config: Any, state_dict: Any,
                    num_threads: Optional[int] = None) -> LSTM:
        """A model from a config dict (as config() gives) and a state dict, both
        checked; no random weights are drawn. Every loader (files, converters,
        unpickling) builds its model here.
        """
        spec = config_from_dict(config)
        checked = checked_state_dict(spec, state_dict)
        model = cls.__new__(cls)
        model._start(spec, num_threads)
        for name, value in checked.items():  # copies: the source keeps its own arrays
            object.__setattr__(model, name, aligned_copy(value, spec.dtype))
        return model

    # -- configuration: read-only ------------------------------------------

    @property
    def input_size(self) -> int:
        """D, the features per time step of layer 0."""
        return self._config.input_size

    @property
    def hidden_size(self) -> int:
        """H, the size of the cell state."""
        return self._config.hidden_size

    @property
    def num_layers(self) -> int:
        """Stacked layers."""
        return self._config.num_layers

    @property
    def bias(self) -> bool:
        """Whether the layers have biases."""
        return self._config.bias

    @property
    def batch_first(self) -> bool:
        """Input and output are (B, T, features)."""
        return self._config.batch_first

    @property
    def bidirectional(self) -> bool:
        """Each layer also runs backwards."""
        return self._config.bidirectional

    @property
    def proj_size(self) -> int:
        """Features of the projected h (LSTMP), 0 for none."""
        return self._config.proj_size

    @property
    def padding(self) -> str:
        """What padded steps output: "zeros" or "carry"."""
        return self._config.padding

    reverse = property(lambda self: self._config.reverse,
                       doc="One direction read from each sequence's end (ONNX reverse).")
    go_backwards = property(lambda self: self._config.go_backwards,
                            doc="Keras's go_backwards: output in the order processed.")
    peepholes = property(lambda self: self._config.peepholes,
                         doc="Whether the gates see the cell state (weight_peephole_l{k}).")
    clip = property(lambda self: self._config.clip,
                    doc="The pre-activation clip threshold, or None.")
    input_forget = property(lambda self: self._config.input_forget,
                            doc="Coupled input and forget gates (f = 1 - i).")
    activations = property(lambda self: self._config.activations,
                           doc="() for sigmoid, tanh, tanh; else (f, g, h) per direction.")
    dropout = property(lambda self: self._config.dropout,
                       doc="Dropout between layers in forward_train.")
    recurrent_dropout = property(lambda self: self._config.recurrent_dropout,
                                 doc="Recurrent dropout (a mask on h) in forward_train.")

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the weights and of every computation."""
        return self._config.dtype

    @property
    def num_directions(self) -> int:
        """1 or 2."""
        return self._config.num_directions

    @property
    def output_size(self) -> int:
        """Features of h per direction: proj_size if set, else hidden_size."""
        return self._config.output_size

    @property
    def num_threads(self) -> Optional[int]:
        """None (BLAS threads) or k > 1 threads per call; settable."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value: Optional[int]) -> None:
        checked = None if value is None else check_size("num_threads", value)
        object.__setattr__(self, "_num_threads", checked)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this architecture.

        Returns
        -------
        dict
            JSON-ready keyword arguments of `LSTM` (the dtype by name).

        Examples
        --------
        >>> import cylstm
        >>> config = cylstm.LSTM(3, 4, bidirectional=True).config()
        >>> config
        {'input_size': 3, 'hidden_size': 4, 'num_layers': 1, 'bias': True, 'batch_first': False,
         'bidirectional': True, 'proj_size': 0, 'padding': 'zeros', 'dtype': 'float32'}
        >>> cylstm.LSTM(**config)
        LSTM(3, 4, bidirectional=True, dtype=float32)
        """
        return self._config.as_dict()

    # -- parameters: checked on assignment -----------------------------------

    if TYPE_CHECKING:  # the parameters (weight_ih_l0, ...) are set per configuration
        def __getattr__(self, name: str) -> FloatArray: ...

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CONFIG_KEYS:
            raise AttributeError(
                f"{name} is fixed when the model is made; build a new LSTM for another "
                f"(its weights go along with model.state_dict())")
        if name in parameter_shapes(self._config):
            self._store(name, value)
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in parameter_shapes(self._config):
            raise AttributeError(f"{name} is a parameter of the model and cannot be deleted")
        object.__delattr__(self, name)

    def _store(self, name: str, value: ArrayLike) -> None:
        """Set parameter `name`: the array itself when the kernel can read it as it
        is (aligned C order of the model dtype), else an aligned copy."""
        shape = parameter_shapes(self._config)[name]
        value = checked_parameter(name, value, shape, self.dtype)
        if not (value.flags.c_contiguous and value.ctypes.data % 64 == 0):
            # Per-step BLAS time at batch 1 varied up to 1.8x with the alignment
            # of the recurrent weights: store them on a cache line.
            value = aligned_copy(value, self.dtype)
        object.__setattr__(self, name, value)

    def state_dict(self) -> dict[str, FloatArray]:
        """Copies of the parameters, {name: ndarray}, in PyTorch's names and order.

        Examples
        --------
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, seed=0)
        >>> {name: array.shape for name, array in model.state_dict().items()}
        {'weight_ih_l0': (16, 3), 'weight_hh_l0': (16, 4), 'bias_ih_l0': (16,), 'bias_hh_l0': (16,)}
        """
        return {name: np.array(getattr(self, name)) for name in parameter_shapes(self._config)}

    def load_state_dict(self, state_dict: StateDictLike) -> None:
        """Set the parameters from a mapping of names to arrays (or torch tensors).

        Names and shapes must match exactly; values are converted to the model
        dtype and copied. Nothing is changed unless every entry is valid.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            Every parameter of the model, by name (as `state_dict()` gives).

        Raises
        ------
        TypeError
            If `state_dict` is not a mapping or holds non-real values.
        ValueError
            For missing or unexpected names, or a wrong shape (the error names it).

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> model, other = cylstm.LSTM(3, 4, seed=0), cylstm.LSTM(3, 4, seed=1)
        >>> other.load_state_dict(model.state_dict())
        >>> np.array_equal(other.weight_hh_l0, model.weight_hh_l0)
        True
        >>> other.load_state_dict({"weight_ih_l0": np.zeros((16, 3))})
        Traceback (most recent call last):
        ...
        ValueError: state_dict does not match the model: missing ['weight_hh_l0', ...
        """
        for name, value in checked_state_dict(self._config, state_dict).items():
            object.__setattr__(self, name, aligned_copy(value, self.dtype))

    # -- running ---------------------------------------------------------

    def __call__(self, x: ArrayLike, hx: StateLike = None,
                 lengths: Optional[ArrayLike] = None) -> tuple[FloatArray, State]:
        """Run the sequences `x`; return `(output, (h_n, c_n))`.

        Parameters
        ----------
        x : array_like
            (T, B, D), (B, T, D) with batch_first, or unbatched (T, D).
        hx : (h0, c0), optional
            h0 (num_layers * num_directions, B, H_out), c0 (..., B, H) (no B
            axis unbatched); zeros if omitted.
        lengths : array_like of int, (B,), optional
            Values in [1, T]: row b is valid for its first lengths[b] steps
            (any order of lengths). Past its length a row keeps its state and
            outputs what `padding` says; h_n and c_n are its state after its
            last valid step; the backward direction starts at its last valid
            step.

        Returns
        -------
        output : ndarray
            (T, B, num_directions * H_out) ((B, T, ...) with batch_first,
            (T, ...) unbatched).
        (h_n, c_n) : tuple of ndarray
            The final state, laid out as h0, c0.

        Raises
        ------
        TypeError, ValueError
            For an argument of the wrong type or shape, naming it.

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, seed=0, dtype=np.float64)
        >>> x = np.ones((5, 2, 3))
        >>> output, (h_n, c_n) = model(x, lengths=[5, 2])
        >>> output.shape, h_n.shape
        ((5, 2, 4), (1, 2, 4))
        >>> np.round(output[:, 1, 0], 4)          # row 1 is padded after 2 steps
        array([0.1224, 0.2178, 0.    , 0.    , 0.    ])
        >>> np.array_equal(h_n[0, 1], output[1, 1])
        True
        """
        if hx is None and lengths is None and self._common_case and self._num_threads is None:
            result = _walk.forward_common(self, self._config, x)
            if result is not None:
                return result
        call = _walk.prepare(self._config, x, hx, lengths)
        return _walk.forward(self._config, _walk.kernel_weights(self, self._config), call,
                             self._workers())

    def _workers(self) -> int:
        """Threads this call may split its work over (1: BLAS threads only)."""
        if self._num_threads is None or self._num_threads < 2 or not _parallel.can_split():
            return 1
        return self._num_threads

    def forward_train(self, x: ArrayLike, hx: StateLike = None,
                      lengths: Optional[ArrayLike] = None, *, rng: Any = None,
                      ) -> tuple[FloatArray, State, Backward]:
        """The forward pass, keeping what backpropagation needs.

        Parameters
        ----------
        x, hx, lengths
            As for calling the model.
        rng : int, np.random.Generator or None
            Where the `dropout` and `recurrent_dropout` masks come from (an
            int seed makes a training step reproducible); unused without
            dropout. `backward.masks` gives the masks drawn.

        Returns
        -------
        output, (h_n, c_n)
            As from `model(x, hx, lengths)`.
        backward : cylstm.training.Backward
            `backward(grad_output, grad_state=None)` returns `(grad_x,
            (grad_h0, grad_c0), grads)`, once. See cylstm.training.

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, seed=0, dtype=np.float64)
        >>> output, (h_n, c_n), backward = model.forward_train(np.ones((5, 2, 3)))
        >>> grad_x, (grad_h0, grad_c0), grads = backward(np.ones_like(output))
        >>> grad_x.shape, grad_h0.shape, list(grads)
        ((5, 2, 3), (1, 2, 4), ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0'])
        """
        return training.forward_train(self, self._config, x, hx, lengths, rng)

    def stream(self) -> LSTMStream:
        """A stateful runner: feed the sequence in chunks, get the same outputs.

        See cylstm.stream.LSTMStream. Not for bidirectional models.

        Raises
        ------
        ValueError
            For a bidirectional model.

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, seed=0, dtype=np.float64)
        >>> x = np.ones((6, 2, 3))
        >>> stream = model.stream()
        >>> chunks = [stream(x[:4]), stream(x[4:5]), stream(x[5:])]
        >>> np.allclose(np.concatenate(chunks), model(x)[0], rtol=0, atol=1e-12)
        True
        """
        return LSTMStream(self)

    # -- weights from and to other frameworks -----------------------------

    @classmethod
    def from_torch(cls, source: Any, **config: Any) -> LSTM:
        """From a torch.nn.LSTM, or a state dict of its tensors or arrays.

        Parameters
        ----------
        source : torch.nn.LSTM or mapping of str to array_like
            The module, or its state dict (the architecture is read off the
            names and shapes).
        **config
            What weights cannot tell (batch_first, padding, dtype, num_threads);
            architecture arguments given must agree with the weights. See
            cylstm.torch_io.parts_from_torch.

        Examples
        --------
        >>> import numpy as np
        >>> import torch
        >>> import cylstm
        >>> _ = torch.manual_seed(0)
        >>> module = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
        >>> model = cylstm.LSTM.from_torch(module)
        >>> model
        LSTM(3, 4, num_layers=2, batch_first=True, dtype=float32)
        >>> x = np.ones((2, 5, 3), np.float32)
        >>> with torch.no_grad():
        ...     expected, _ = module(torch.from_numpy(x))
        >>> np.allclose(model(x)[0], expected.numpy(), rtol=0, atol=1e-5)
        True
        """
        num_threads = config.pop("num_threads", None)
        return cls._from_parts(*torch_io.parts_from_torch(source, **config), num_threads)

    def to_torch(self) -> Any:
        """A torch.nn.LSTM with this model's configuration and weights; needs torch.

        Its batch_first is the model's; padding="carry" has no torch
        counterpart (torch's packed sequences give zeros).

        Examples
        --------
        >>> import numpy as np
        >>> import torch
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, proj_size=2, seed=0, dtype=np.float64)
        >>> module = model.to_torch()
        >>> module
        LSTM(3, 4, proj_size=2)
        >>> module.weight_hr_l0.dtype
        torch.float64
        >>> x = np.ones((5, 2, 3))
        >>> with torch.no_grad():
        ...     output, _ = module(torch.from_numpy(x))
        >>> np.allclose(output.numpy(), model(x)[0], rtol=0, atol=1e-12)
        True
        """
        return torch_io.torch_from_parts(self.config(), self.state_dict())

    @classmethod
    def from_onnx(cls, source: Union[str, os.PathLike[str], bytes, Any],
                  dtype: Optional[DTypeLike] = None) -> LSTM:
        """From an ONNX model (path, bytes or ModelProto) with LSTM nodes; needs onnx.

        See cylstm.onnx_io.parts_from_onnx: what is read (never a file outside
        the model's folder) and what is refused.

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, num_layers=2, seed=0)
        >>> restored = cylstm.LSTM.from_onnx(model.to_onnx().SerializeToString())
        >>> restored
        LSTM(3, 4, num_layers=2, dtype=float32)
        >>> all(np.array_equal(restored.state_dict()[name], weight)
        ...     for name, weight in model.state_dict().items())
        True
        """
        return cls._from_parts(*onnx_io.parts_from_onnx(source, dtype=dtype))

    def to_onnx(self, path: Union[str, os.PathLike[str], None] = None,
                opset: Optional[int] = None, *, sequence_lens: bool = True,
                initial_state: bool = False) -> Any:
        """An ONNX model that onnxruntime runs with this model's results; needs onnx.

        Graph inputs X and (unless sequence_lens=False) sequence_lens (B,)
        int32, plus initial_h/initial_c with initial_state=True; outputs Y
        shaped like this model's output, Y_h and Y_c like h_n and c_n. Written
        atomically to `path` if given. See cylstm.onnx_export.onnx_from_parts.

        Returns
        -------
        onnx.ModelProto

        Raises
        ------
        NotImplementedError
            For proj_size > 0 and padding="carry", which ONNX's LSTM lacks.

        Examples
        --------
        >>> import numpy as np
        >>> import onnxruntime
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, seed=0)
        >>> proto = model.to_onnx()
        >>> [graph_input.name for graph_input in proto.graph.input]
        ['X', 'sequence_lens']
        >>> session = onnxruntime.InferenceSession(proto.SerializeToString(),
        ...                                        providers=["CPUExecutionProvider"])
        >>> x = np.ones((5, 2, 3), np.float32)
        >>> y, y_h, y_c = session.run(None, {"X": x, "sequence_lens": np.array([5, 3], np.int32)})
        >>> output, (h_n, c_n) = model(x, lengths=[5, 3])
        >>> y.shape, np.allclose(y, output, rtol=0, atol=1e-5)
        ((5, 2, 4), True)
        """
        return onnx_export.onnx_from_parts(self.config(), self.state_dict(), path, opset=opset,
                                       sequence_lens=sequence_lens,
                                       initial_state=initial_state, description=repr(self))

    @classmethod
    def from_keras(cls, layer: Any, dtype: Optional[DTypeLike] = None) -> LSTM:
        """From a Keras LSTM layer or a Bidirectional wrapper around one.

        See cylstm.keras_io.parts_from_keras: the model is batch_first, and
        its padding reproduces what Keras outputs at masked steps.

        Examples
        --------
        >>> import numpy as np
        >>> import keras
        >>> import cylstm
        >>> layer = keras.layers.LSTM(4, return_sequences=True)
        >>> x = np.ones((2, 5, 3), np.float32)
        >>> expected = keras.ops.convert_to_numpy(layer(x))
        >>> model = cylstm.LSTM.from_keras(layer)
        >>> model
        LSTM(3, 4, batch_first=True, padding='carry', dtype=float32)
        >>> np.allclose(model(x)[0], expected, rtol=0, atol=1e-5)
        True
        """
        return cls._from_parts(*keras_io.parts_from_keras(layer, dtype=dtype))

    # -- pickling: a pickle is untrusted data ------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config(), "num_threads": self._num_threads,
                "parameters": {name: getattr(self, name)
                               for name in parameter_shapes(self._config)}}

    def __setstate__(self, state: Any) -> None:
        # Rebuild through the checks of __init__ and load_state_dict (this also
        # restores the weights' 64-byte alignment).
        if not isinstance(state, dict):
            raise TypeError(f"an LSTM pickle state must be a dict, got {type(state).__name__}")
        if "config" in state:
            config, parameters = state["config"], state.get("parameters")
        else:  # written by cylstm 0.1: the instance's __dict__
            config = {key: state[key] for key in CONFIG_KEYS if key in state}
            parameters = {key: value for key, value in state.items()
                          if key not in CONFIG_KEYS and key != "num_threads"}
        model = LSTM._from_parts(config, parameters, state.get("num_threads"))
        for name, value in vars(model).items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        defaults = {"num_layers": 1, "bias": True, "batch_first": False,
                    "bidirectional": False, "proj_size": 0, "padding": "zeros"}
        config = self.config()  # the variants appear in it only when set
        options = "".join(f", {key}={value!r}" for key, value in config.items()
                          if key not in ("input_size", "hidden_size", "dtype")
                          and defaults.get(key, not value) != value)
        return (f"LSTM({self.input_size}, {self.hidden_size}{options}, "
                f"dtype={self.dtype.name})")
