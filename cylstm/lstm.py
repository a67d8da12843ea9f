"""The Python face of cylstm: the LSTM class and the functional `lstm`.

Weights are plain ndarrays in PyTorch's layout (gate order i, f, g, o). This
module validates input, picks the dtype and memory layout, and walks layers
and directions; each (layer, direction) is one call of the compiled kernel in
cylstm/_lstm.pyx that runs the whole sequence.
"""
import functools
from collections.abc import Mapping
from typing import NamedTuple, Optional

import numpy as np

from . import _lstm, _parallel
from ._validation import (
    aligned_copy,
    as_lengths,
    as_real_array,
    check_dtype,
    check_flag,
    check_shape,
    check_size,
    is_kernel_ready,
)

PADDING_MODES = ("zeros", "carry")
# The constructor arguments that config() returns and _from_parts takes.
CONFIG_KEYS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
               "bidirectional", "proj_size", "padding", "dtype")


class PreparedInputs(NamedTuple):
    """A call's validated arguments, as the layers consume them."""

    x_time_major: np.ndarray  # (T, B, D), a view of the input
    h0: np.ndarray  # (num_layers * num_directions, B, H_out)
    c0: np.ndarray  # (num_layers * num_directions, B, H)
    lengths: Optional[np.ndarray]  # (B,) intp, or None
    unbatched: bool
    batch_first: bool


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
    unbatched = _check_input(x, input_size)
    state_shape = (hidden_size,) if unbatched else (x.shape[1], hidden_size)
    h = _initial_state("h0", h0, state_shape, dtype).reshape(-1, hidden_size)
    c = _initial_state("c0", c0, state_shape, dtype).reshape(-1, hidden_size)
    x_time_major = _kernel_input(x[:, None, :] if unbatched else x)
    output = np.empty(x_time_major.shape[:2] + (hidden_size,), dtype)
    _lstm.forward_layer(x_time_major, _kernel_weight(weight_ih), _kernel_weight(weight_hh),
                        bias, h, c, output)
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
    proj_size if set, else H. They may be changed in place.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True,
                 batch_first=False, bidirectional=False, proj_size=0,
                 padding="zeros", dtype=np.float32, seed=None, num_threads=None):
        self._configure(input_size, hidden_size, num_layers, bias=bias,
                        batch_first=batch_first, bidirectional=bidirectional,
                        proj_size=proj_size, padding=padding, dtype=dtype,
                        num_threads=num_threads)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self._parameter_shapes().items():
            setattr(self, name, aligned_copy(rng.uniform(-bound, bound, shape), self.dtype))

    def _configure(self, input_size, hidden_size, num_layers=1, *, bias=True,
                   batch_first=False, bidirectional=False, proj_size=0,
                   padding="zeros", dtype=np.float32, num_threads=None):
        """Check and set the configuration (everything but the weights)."""
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) \
                or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative int, got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}")
        self.proj_size = int(proj_size)
        if not isinstance(padding, str) or padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        self.padding = padding
        self.bias = check_flag("bias", bias)
        self.batch_first = check_flag("batch_first", batch_first)
        self.bidirectional = check_flag("bidirectional", bidirectional)
        self.dtype = check_dtype(dtype)
        self.num_threads = None if num_threads is None else check_size("num_threads", num_threads)

    @classmethod
    def _from_parts(cls, config, state_dict, num_threads=None):
        """A model from `config()`'s dict and a state dict, validated as __init__ and
        load_state_dict validate; no random weights are drawn. Every loader (files,
        converters, unpickling) builds its model here.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        unknown = sorted(str(key) for key in config if key not in CONFIG_KEYS)
        if unknown:
            raise TypeError(f"config has unknown keys {unknown}; expected some of {CONFIG_KEYS}")
        required = [key for key in ("input_size", "hidden_size") if key not in config]
        if required:
            raise TypeError(f"config must give {required}")
        model = cls.__new__(cls)
        model._configure(**config, num_threads=num_threads)
        model.load_state_dict(state_dict)
        return model

    # -- structure -------------------------------------------------------

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """Features of h per direction: proj_size if set, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _parameter_names(self, layer, direction):
        """The names of one (layer, direction)'s parameters, in PyTorch's order."""
        return [name for name, _ in self._layer_layout(layer, direction)]

    def _layer_layout(self, layer, direction):
        """((name, shape), ...) of one (layer, direction)'s parameters, in PyTorch's order."""
        return _layer_layout(self.input_size, self.hidden_size, self.proj_size, self.bias,
                             self.num_directions, layer, direction)

    def _parameter_shapes(self):
        """{name: shape} of every parameter, in PyTorch's order."""
        return {name: shape
                for layer in range(self.num_layers)
                for direction in range(self.num_directions)
                for name, shape in self._layer_layout(layer, direction)}

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
        inputs = self._prepare(x, hx, lengths)
        workers = self._workers()
        batch = inputs.x_time_major.shape[1]
        # Two workers on a bidirectional model run the directions side by side:
        # each keeps the whole batch (measured 151 ms against 161 for the batch
        # split and 187 for 2-thread BLAS, two layers at (100, 32, 128, 256)).
        directions_only = self.bidirectional and workers == 2
        if workers > 1 and batch > 1 and not directions_only:
            output, h_n, c_n = self._run_split(inputs, min(workers, batch))
        else:
            output, h_n, c_n = self._run(inputs.x_time_major, inputs.h0, inputs.c0,
                                         inputs.lengths, inputs.batch_first, workers)
        if inputs.unbatched:
            return output[:, 0], (h_n[:, 0], c_n[:, 0])
        return output, (h_n, c_n)

    def _prepare(self, x, hx, lengths):
        """Validate a call's arguments; x becomes a (T, B, D) view, states (L*dirs, B, .)."""
        x_time_major, unbatched, batch_first = self._time_major("x", x)
        steps, batch = x_time_major.shape[:2]
        if lengths is not None:
            if unbatched:
                raise ValueError("lengths applies to batched input; x is unbatched (T, D)")
            lengths = as_lengths(lengths, batch, steps)
        h0, c0 = self._initial_states(hx, batch, unbatched)
        return PreparedInputs(x_time_major, h0, c0, lengths, unbatched, batch_first)

    def _time_major(self, name, x):
        """(x as a (T, B, D) view in the model dtype, unbatched, batch_first for this x)."""
        x = as_real_array(name, x, self.dtype)
        unbatched = _check_input(x, self.input_size)
        if unbatched:
            x = x[:, None, :]
        batch_first = self.batch_first and not unbatched
        return (x.transpose(1, 0, 2) if batch_first else x), unbatched, batch_first

    def forward_train(self, x, hx=None, lengths=None):
        """The forward pass, keeping what backpropagation needs.

        Returns `(output, (h_n, c_n), backward)`, the first two as from
        `model(x, hx, lengths)`; `backward(grad_output, grad_state=None)`
        returns `(grad_x, (grad_h0, grad_c0), grads)`. See cylstm.training.
        """
        from .training import forward_train

        return forward_train(self, x, hx, lengths)

    def _workers(self):
        """Threads this call may split its work over (1: BLAS threads only)."""
        if self.num_threads is None or self.num_threads < 2 or not _parallel.can_split():
            return 1
        return self.num_threads

    def _run_split(self, inputs, workers):
        """The batch cut into `workers` parts, each run whole on its own thread."""
        x, h0, c0, lengths = inputs.x_time_major, inputs.h0, inputs.c0, inputs.lengths
        bounds = np.linspace(0, x.shape[1], workers + 1).astype(int)
        parts = [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
        results = _parallel.run_all(
            [lambda rows=rows: self._run(x[:, rows], h0[:, rows], c0[:, rows],
                                         None if lengths is None else lengths[rows], False, 1)
             for rows in parts], workers)
        output, output_time_major = _new_output(
            x.shape[0], x.shape[1], self.num_directions * self.output_size, self.dtype,
            inputs.batch_first, False)
        h_n, c_n = np.empty_like(h0), np.empty_like(c0)
        for rows, (part_output, part_h_n, part_c_n) in zip(parts, results):
            output_time_major[:, rows] = part_output
            h_n[:, rows], c_n[:, rows] = part_h_n, part_c_n
        return output, h_n, c_n

    def _run(self, x_time_major, h0, c0, lengths, batch_first, workers=1):
        """All layers and directions; x_time_major (T, B, D) may be any view.

        With workers > 1 the two directions of a layer run side by side.
        """
        steps, batch = x_time_major.shape[:2]
        width = self.output_size
        features = self.num_directions * width
        h_n = np.empty_like(h0)
        c_n = np.empty_like(c0)
        layer_input = _kernel_input(x_time_major)
        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            output, output_time_major = _new_output(
                steps, batch, features, self.dtype, batch_first and last, lengths is not None)

            def run_direction(direction, layer=layer, layer_input=layer_input,
                              output_time_major=output_time_major):
                index = layer * self.num_directions + direction
                w_ih, w_hh, bias, w_hr = self._kernel_parameters(layer, direction)
                h = np.array(h0[index], order="C")  # the kernel updates it in place
                c = np.array(c0[index], order="C")
                _lstm.forward_layer(
                    layer_input, w_ih, w_hh, bias, h, c,
                    output_time_major[:, :, direction * width:(direction + 1) * width],
                    w_hr=w_hr, lengths=lengths, reverse=direction == 1)
                h_n[index], c_n[index] = h, c

            directions = range(self.num_directions)
            if workers > 1 and self.num_directions == 2:
                _parallel.run_all([lambda d=d: run_direction(d) for d in directions], 2)
            else:
                for direction in directions:
                    run_direction(direction)
            layer_input = output_time_major
        if lengths is not None and self.padding == "carry":
            carry_last_valid(output_time_major[:, :, :width], lengths)
        return output, h_n, c_n

    def _initial_states(self, hx, batch, unbatched, name="hx"):
        """(h0, c0), each (layers * directions, B, features), from hx or zeros.

        `name` is what error messages call hx (a stream calls it "state").
        """
        layers = self.num_layers * self.num_directions
        h_shape = (layers, batch, self.output_size)
        c_shape = (layers, batch, self.hidden_size)
        if hx is None:
            return np.zeros(h_shape, self.dtype), np.zeros(c_shape, self.dtype)
        check_state_pair(name, hx)
        states = []
        for position, (part, value, shape) in enumerate(
                (("h0", hx[0], h_shape), ("c0", hx[1], c_shape))):
            argument = f"{name}[{position}] ({part})"
            expected = (shape[0], shape[2]) if unbatched else shape
            state = check_shape(argument, as_real_array(argument, value, self.dtype), expected)
            states.append(state.reshape(shape))
        return states

    def _kernel_parameters(self, layer, direction):
        """(w_ih, w_hh, b_ih + b_hh, w_hr or None) as C-contiguous arrays of the model dtype."""
        params = []
        for name, shape in self._layer_layout(layer, direction):
            value = getattr(self, name)
            if not (type(value) is np.ndarray and value.dtype == self.dtype
                    and value.shape == shape and value.flags.c_contiguous
                    and value.flags.aligned):
                value = _kernel_weight(
                    check_shape(name, as_real_array(name, value, self.dtype), shape))
            params.append(value)
        w_ih, w_hh = params[:2]
        bias = params[2] + params[3] if self.bias else np.zeros(w_ih.shape[0], self.dtype)
        return w_ih, w_hh, bias, (params[-1] if self.proj_size else None)

    def stream(self):
        """A stateful runner: feed the sequence in chunks, get the same outputs.

        See cylstm.stream.LSTMStream. Not for bidirectional models.
        """
        from .stream import LSTMStream

        return LSTMStream(self)

    # -- weights from and to other frameworks -----------------------------

    @classmethod
    def from_torch(cls, source, **config):
        """From a torch.nn.LSTM, or a state dict of its tensors or arrays.

        See cylstm.torch_io.lstm_from_torch.
        """
        from .torch_io import lstm_from_torch

        return lstm_from_torch(source, **config)

    @classmethod
    def from_onnx(cls, source, dtype=None):
        """From an ONNX model (path, bytes or ModelProto) with LSTM nodes; needs onnx.

        See cylstm.onnx_io.lstm_from_onnx.
        """
        from .onnx_io import lstm_from_onnx

        return lstm_from_onnx(source, dtype=dtype)

    def to_onnx(self, path=None, opset=None, *, sequence_lens=True, initial_state=False):
        """An ONNX model that onnxruntime runs with this model's results; needs onnx.

        Graph inputs X and (unless sequence_lens=False) sequence_lens (B,)
        int32, plus initial_h/initial_c with initial_state=True; outputs Y
        shaped like this model's output, Y_h and Y_c like h_n and c_n. See
        cylstm.onnx_io.lstm_to_onnx.
        """
        from .onnx_io import lstm_to_onnx

        return lstm_to_onnx(self, path, opset=opset, sequence_lens=sequence_lens,
                            initial_state=initial_state)

    @classmethod
    def from_keras(cls, layer, dtype=None):
        """From a Keras LSTM layer or a Bidirectional wrapper around one.

        See cylstm.keras_io.lstm_from_keras.
        """
        from .keras_io import lstm_from_keras

        return lstm_from_keras(layer, dtype=dtype)

    # -- parameters ------------------------------------------------------

    def state_dict(self):
        """Copies of the parameters, {name: ndarray}, in PyTorch's names and order."""
        return {name: np.array(getattr(self, name)) for name in self._parameter_shapes()}

    def load_state_dict(self, state_dict):
        """Set the parameters from a mapping of names to arrays (or torch tensors).

        Names and shapes must match exactly; values are converted to the model
        dtype and copied. Nothing is changed unless every entry is valid.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict must be a mapping of parameter names to arrays, "
                f"got {type(state_dict).__name__}")
        # Count first: a configuration claiming a billion layers must not
        # build a billion names before it is refused.
        expected_count = (self.num_layers * self.num_directions
                          * (2 + 2 * self.bias + bool(self.proj_size)))
        if len(state_dict) != expected_count and expected_count > 4096:
            raise ValueError(
                f"state_dict must hold the model's {expected_count} parameters, got "
                f"{len(state_dict)} entries: {_some(state_dict)}")
        shapes = self._parameter_shapes()
        missing = [name for name in shapes if name not in state_dict]
        unexpected = [name for name in state_dict if name not in shapes]
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not match the model: missing {_some(missing)}, "
                f"unexpected {_some(unexpected)}; expected the names {_some(shapes)}")
        loaded = {}
        for name, shape in shapes.items():
            value = state_dict[name]
            argument = f"state_dict[{name!r}]"
            if hasattr(value, "shape"):  # check before converting a large wrong array
                check_shape(argument, _Shaped(tuple(value.shape)), shape)
            loaded[name] = check_shape(argument, as_real_array(argument, value, self.dtype), shape)
        for name, value in loaded.items():
            setattr(self, name, aligned_copy(value, self.dtype))

    def config(self):
        """The constructor arguments that rebuild this architecture."""
        return {
            "input_size": self.input_size, "hidden_size": self.hidden_size,
            "num_layers": self.num_layers, "bias": self.bias,
            "batch_first": self.batch_first, "bidirectional": self.bidirectional,
            "proj_size": self.proj_size, "padding": self.padding,
            "dtype": self.dtype.name,
        }

    def __getstate__(self):
        return {"config": self.config(), "num_threads": self.num_threads,
                "parameters": {name: getattr(self, name) for name in self._parameter_shapes()}}

    def __setstate__(self, state):
        # A pickle is untrusted data: rebuild through the checks of __init__ and
        # load_state_dict (this also restores the weights' 64-byte alignment).
        if not isinstance(state, Mapping):
            raise TypeError(f"an LSTM pickle state must be a dict, got {type(state).__name__}")
        if "config" in state:
            config, parameters = state["config"], state.get("parameters")
            num_threads = state.get("num_threads")
        else:  # written by cylstm 0.1: the instance's __dict__
            config = {key: state[key] for key in CONFIG_KEYS if key in state}
            parameters = {key: value for key, value in state.items()
                          if key not in CONFIG_KEYS and key != "num_threads"}
            num_threads = state.get("num_threads")
        self.__dict__.update(LSTM._from_parts(config, parameters, num_threads).__dict__)

    def __repr__(self):
        defaults = {"num_layers": 1, "bias": True, "batch_first": False,
                    "bidirectional": False, "proj_size": 0, "padding": "zeros"}
        config = self.config()
        options = "".join(f", {key}={config[key]!r}" for key, default in defaults.items()
                          if config[key] != default)
        return (f"LSTM({self.input_size}, {self.hidden_size}{options}, "
                f"dtype={self.dtype.name})")


@functools.lru_cache(maxsize=256)
def _layer_layout(input_size, hidden_size, proj_size, bias, num_directions, layer, direction):
    """LSTM._layer_layout, cached: every call of a model reads it per layer."""
    suffix = f"l{layer}" + ("_reverse" if direction else "")
    gates, width = 4 * hidden_size, proj_size or hidden_size
    inputs = input_size if layer == 0 else width * num_directions
    layout = [(f"weight_ih_{suffix}", (gates, inputs)), (f"weight_hh_{suffix}", (gates, width))]
    if bias:
        layout += [(f"bias_ih_{suffix}", (gates,)), (f"bias_hh_{suffix}", (gates,))]
    if proj_size:
        layout.append((f"weight_hr_{suffix}", (proj_size, hidden_size)))
    return tuple(layout)


class _Shaped(NamedTuple):
    """Something with a shape, for check_shape before an array is converted."""

    shape: tuple


def _some(names, limit=12):
    """A list of names for an error message, cut after `limit`."""
    names = [str(name) for name in names]
    if len(names) <= limit:
        return names
    return names[:limit] + [f"... ({len(names) - limit} more)"]


def check_state_pair(name, value):
    """Refuse anything but a pair (h, c), saying what came instead."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple (h0, c0), got {type(value).__name__}")
    if len(value) != 2:
        raise TypeError(
            f"{name} must be a tuple (h0, c0) of 2 arrays, got a {type(value).__name__} "
            f"of {len(value)} items")


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


def _kernel_input(array):
    """`array` as the kernel reads it: itself if it is kernel-ready, else an aligned
    C-contiguous copy (byte strides, negative strides, misaligned data)."""
    if is_kernel_ready(array, array.dtype):
        return array
    return np.array(array, order="C")


def _kernel_weight(array):
    """`array` if it is C-contiguous and aligned, else such a copy."""
    if array.flags.c_contiguous and array.flags.aligned:
        return array
    return np.array(array, order="C")


def _new_output(steps, batch, features, dtype, batch_first, zero_padding):
    """(output in the user's layout, its (T, B, F) view); zeroed when rows are padded."""
    allocate = np.zeros if zero_padding else np.empty
    if batch_first:
        output = allocate((batch, steps, features), dtype)
        return output, output.transpose(1, 0, 2)
    output = allocate((steps, batch, features), dtype)
    return output, output


def padded_steps(steps, lengths):
    """A (T, B) mask, True where step t lies past row b's length."""
    return np.arange(steps)[:, None] >= lengths[None, :]


def carry_last_valid(output_time_major, lengths):
    """Past each row's length, repeat its last valid output (Keras masking)."""
    steps = output_time_major.shape[0]
    for row, length in enumerate(lengths):
        if length < steps:
            output_time_major[length:, row] = output_time_major[length - 1, row]


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
