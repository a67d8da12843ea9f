"""The Python face of cylstm: the LSTM class and the functional `lstm`.

Weights are plain ndarrays in PyTorch's layout (gate order i, f, g, o), checked
when they are assigned. The walk over layers and directions is cylstm/_walk.py;
names and shapes are cylstm/_params.py; the file and framework formats
translate to and from (config, state_dict) and are called from here.
"""
import numpy as np

from . import _parallel, _walk, files, keras_io, onnx_io, torch_io, training
from ._params import (
    CONFIG_KEYS,
    checked_parameter,
    checked_state_dict,
    config_from_dict,
    layer_layout,
    make_config,
    parameter_shapes,
)
from ._validation import aligned_copy, as_real_array, check_shape, check_size
from .stream import LSTMStream


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
    weights = [[(_c_order(weight_ih), _c_order(weight_hh), bias, None)]]
    config = make_config(input_size, hidden_size, dtype=dtype)
    output, _, _ = _walk.walk(config, weights, x[:, None, :] if unbatched else x, [h], [c])
    if unbatched:
        return output[:, 0], h[0], c[0]
    return output, h, c


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
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True,
                 batch_first=False, bidirectional=False, proj_size=0,
                 padding="zeros", dtype=np.float32, seed=None, num_threads=None):
        config = make_config(input_size, hidden_size, num_layers, bias=bias,
                             batch_first=batch_first, bidirectional=bidirectional,
                             proj_size=proj_size, padding=padding, dtype=dtype)
        self._start(config, num_threads)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in parameter_shapes(config).items():
            self._store(name, rng.uniform(-bound, bound, shape))

    def _start(self, config, num_threads):
        object.__setattr__(self, "_config", config)
        self.num_threads = num_threads

    @classmethod
    def _from_parts(cls, config, state_dict, num_threads=None):
        """A model from a config dict (as config() gives) and a state dict, both
        checked; no random weights are drawn. Every loader (files, converters,
        unpickling) builds its model here.
        """
        config = config_from_dict(config)
        checked = checked_state_dict(config, state_dict)
        model = cls.__new__(cls)
        model._start(config, num_threads)
        for name, value in checked.items():  # copies: the source keeps its own arrays
            object.__setattr__(model, name, aligned_copy(value, config.dtype))
        return model

    # -- configuration: read-only ------------------------------------------

    input_size = property(lambda self: self._config.input_size,
                          doc="D, the features per time step of layer 0.")
    hidden_size = property(lambda self: self._config.hidden_size,
                           doc="H, the size of the cell state.")
    num_layers = property(lambda self: self._config.num_layers, doc="Stacked layers.")
    bias = property(lambda self: self._config.bias, doc="Whether the layers have biases.")
    batch_first = property(lambda self: self._config.batch_first,
                           doc="Input and output are (B, T, features).")
    bidirectional = property(lambda self: self._config.bidirectional,
                             doc="Each layer also runs backwards.")
    proj_size = property(lambda self: self._config.proj_size,
                         doc="Features of the projected h (LSTMP), 0 for none.")
    padding = property(lambda self: self._config.padding,
                       doc='What padded steps output: "zeros" or "carry".')
    dtype = property(lambda self: self._config.dtype,
                     doc="The dtype of the weights and of every computation.")
    num_directions = property(lambda self: self._config.num_directions, doc="1 or 2.")
    output_size = property(lambda self: self._config.output_size,
                           doc="Features of h per direction: proj_size if set, else hidden_size.")

    @property
    def num_threads(self):
        """None (BLAS threads) or k > 1 threads per call; settable."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value):
        checked = None if value is None else check_size("num_threads", value)
        object.__setattr__(self, "_num_threads", checked)

    def config(self):
        """The constructor arguments that rebuild this architecture."""
        return self._config.as_dict()

    # -- parameters: checked on assignment -----------------------------------

    def __setattr__(self, name, value):
        if name in CONFIG_KEYS:
            raise AttributeError(
                f"{name} is fixed when the model is made; build a new LSTM for another "
                f"(its weights go along with model.state_dict())")
        if name in parameter_shapes(self._config):
            self._store(name, value)
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name in parameter_shapes(self._config):
            raise AttributeError(f"{name} is a parameter of the model and cannot be deleted")
        object.__delattr__(self, name)

    def _store(self, name, value):
        """Set parameter `name`: the array itself when the kernel can read it as it
        is (aligned C order of the model dtype), else an aligned copy."""
        shape = parameter_shapes(self._config)[name]
        value = checked_parameter(name, value, shape, self.dtype)
        if not (value.flags.c_contiguous and value.ctypes.data % 64 == 0):
            # Per-step BLAS time at batch 1 varied up to 1.8x with the alignment
            # of the recurrent weights: store them on a cache line.
            value = aligned_copy(value, self.dtype)
        object.__setattr__(self, name, value)

    def state_dict(self):
        """Copies of the parameters, {name: ndarray}, in PyTorch's names and order."""
        return {name: np.array(getattr(self, name)) for name in parameter_shapes(self._config)}

    def load_state_dict(self, state_dict):
        """Set the parameters from a mapping of names to arrays (or torch tensors).

        Names and shapes must match exactly; values are converted to the model
        dtype and copied. Nothing is changed unless every entry is valid.
        """
        for name, value in checked_state_dict(self._config, state_dict).items():
            object.__setattr__(self, name, aligned_copy(value, self.dtype))

    # -- running ---------------------------------------------------------

    def __call__(self, x, hx=None, lengths=None):
        """Run the sequences `x`; return `(output, (h_n, c_n))`.

        x is (T, B, D), (B, T, D) with batch_first, or unbatched (T, D).
        hx = (h0, c0): h0 (num_layers * num_directions, B, H_out), c0 (...,
        B, H) (no B axis unbatched); zeros if omitted.
        lengths (B,) ints in [1, T]: row b is valid for its first lengths[b]
        steps (any order of lengths). Past its length a row keeps its state
        and outputs what `padding` says; h_n and c_n are its state after its
        last valid step; the backward direction starts at its last valid step.
        output is (T, B, num_directions * H_out) ((B, T, ...) with batch_first,
        (T, ...) unbatched); h_n, c_n are laid out as h0, c0.
        """
        call = _walk.prepare(self._config, x, hx, lengths)
        return _walk.forward(self._config, _walk.kernel_weights(self, self._config), call,
                             self._workers())

    def _workers(self):
        """Threads this call may split its work over (1: BLAS threads only)."""
        if self._num_threads is None or self._num_threads < 2 or not _parallel.can_split():
            return 1
        return self._num_threads

    def forward_train(self, x, hx=None, lengths=None):
        """The forward pass, keeping what backpropagation needs.

        Returns `(output, (h_n, c_n), backward)`, the first two as from
        `model(x, hx, lengths)`; `backward(grad_output, grad_state=None)`
        returns `(grad_x, (grad_h0, grad_c0), grads)`. See cylstm.training.
        """
        return training.forward_train(self, self._config, x, hx, lengths)

    def stream(self):
        """A stateful runner: feed the sequence in chunks, get the same outputs.

        See cylstm.stream.LSTMStream. Not for bidirectional models.
        """
        return LSTMStream(self)

    def _layer_layout(self, layer, direction):
        """((name, shape), ...) of one (layer, direction)'s parameters, in kernel order."""
        return layer_layout(self._config, layer, direction)

    # -- weights from and to other frameworks -----------------------------

    @classmethod
    def from_torch(cls, source, **config):
        """From a torch.nn.LSTM, or a state dict of its tensors or arrays.

        See cylstm.torch_io.parts_from_torch.
        """
        num_threads = config.pop("num_threads", None)
        return cls._from_parts(*torch_io.parts_from_torch(source, **config), num_threads)

    def to_torch(self):
        """A torch.nn.LSTM with this model's configuration and weights; needs torch.

        Its batch_first is the model's; padding="carry" has no torch
        counterpart (torch's packed sequences give zeros).
        """
        return torch_io.torch_from_parts(self.config(), self.state_dict())

    @classmethod
    def from_onnx(cls, source, dtype=None):
        """From an ONNX model (path, bytes or ModelProto) with LSTM nodes; needs onnx.

        See cylstm.onnx_io.parts_from_onnx: what is read (never a file outside
        the model's folder) and what is refused.
        """
        return cls._from_parts(*onnx_io.parts_from_onnx(source, dtype=dtype))

    def to_onnx(self, path=None, opset=None, *, sequence_lens=True, initial_state=False):
        """An ONNX model that onnxruntime runs with this model's results; needs onnx.

        Graph inputs X and (unless sequence_lens=False) sequence_lens (B,)
        int32, plus initial_h/initial_c with initial_state=True; outputs Y
        shaped like this model's output, Y_h and Y_c like h_n and c_n. Written
        atomically to `path` if given. See cylstm.onnx_io.onnx_from_parts.
        """
        return onnx_io.onnx_from_parts(self.config(), self.state_dict(), path, opset=opset,
                                       sequence_lens=sequence_lens,
                                       initial_state=initial_state, description=repr(self))

    @classmethod
    def from_keras(cls, layer, dtype=None):
        """From a Keras LSTM layer or a Bidirectional wrapper around one.

        See cylstm.keras_io.parts_from_keras.
        """
        return cls._from_parts(*keras_io.parts_from_keras(layer, dtype=dtype))

    # -- pickling: a pickle is untrusted data ------------------------------

    def __getstate__(self):
        return {"config": self.config(), "num_threads": self._num_threads,
                "parameters": {name: getattr(self, name)
                               for name in parameter_shapes(self._config)}}

    def __setstate__(self, state):
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

    def __repr__(self):
        defaults = {"num_layers": 1, "bias": True, "batch_first": False,
                    "bidirectional": False, "proj_size": 0, "padding": "zeros"}
        config = self.config()
        options = "".join(f", {key}={config[key]!r}" for key, default in defaults.items()
                          if config[key] != default)
        return (f"LSTM({self.input_size}, {self.hidden_size}{options}, "
                f"dtype={self.dtype.name})")


def save(path, model):
    """Write `model` to `path` (exactly that name; no extension is added).

    An .npz of plain arrays and a small JSON header (see cylstm.files). The
    weights are checked first, and the file is replaced atomically: on any
    error, KeyboardInterrupt included, an earlier file at `path` stays as it was.
    """
    if not isinstance(model, LSTM):
        raise TypeError(f"model must be a cylstm.LSTM, got {type(model).__name__}")
    files.save_parts(path, model.config(), model.state_dict())


def load(path):
    """Read a model written by `save`: bit-identical weights, the same configuration.

    Never unpickles. A missing or unreadable path raises what open() raises; a
    damaged, foreign or newer file raises a ValueError that names it.
    """
    return LSTM._from_parts(*files.load_parts(path))


def _c_order(array):
    """`array` if it is C-contiguous and aligned, else such a copy."""
    if array.flags.c_contiguous and array.flags.aligned:
        return array
    return np.array(array, order="C")


def _initial_state(name, value, shape, dtype):
    """A fresh, writable copy of a state argument, or zeros."""
    if value is None:
        return np.zeros(shape, dtype)
    return np.array(check_shape(name, as_real_array(name, value, dtype), shape), order="C")


def _combined_bias(bias_ih, bias_hh, gates, dtype):
    """b_ih + b_hh as one (4H,) array; a missing bias counts as zeros."""
    bias = np.zeros(gates, dtype)
    for name, value in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if value is not None:
            bias += check_shape(name, as_real_array(name, value, dtype), (gates,))
    return bias
