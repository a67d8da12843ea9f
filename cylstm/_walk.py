"""The walk over layers and directions: the one place where a call becomes kernel calls.

Every face of cylstm goes through here: the model call (`forward`), training
(`walk` with keep=True) and the stream (`walk` over its own states). This
module owns the call's validation (x as a (T, B, D) view, the initial states,
the lengths), output allocation, the padding semantics and the thread
schemes; each (layer, direction) is one call of the compiled kernel
(cylstm/_lstm.pyx), which runs the whole sequence without the GIL.

`weights` below is what `kernel_weights` returns: per layer, per direction,
(w_ih, w_hh, bias, bias_hh or None, w_hr or None, peephole or None) as the kernel
reads them (it adds bias_hh to bias itself).
"""
import functools
import time
from typing import Any, NamedTuple, Optional

import numpy as np

from . import _lstm, _parallel, _plan
from ._params import Config, layer_layout
from ._validation import aligned_copy, as_lengths, as_real_array, check_shape, is_kernel_ready


class Call(NamedTuple):
    """A call's validated arguments, as the layers consume them."""

    x_time_major: np.ndarray  # (T, B, D), a view of the input
    h0: np.ndarray  # (num_layers * num_directions, B, H_out)
    c0: np.ndarray  # (num_layers * num_directions, B, H)
    lengths: Optional[np.ndarray]  # (B,) intp, or None
    unbatched: bool
    batch_first: bool


class KeptDirection(NamedTuple):
    """What one direction of one layer keeps for backpropagation."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    w_hr: Optional[np.ndarray]
    act: np.ndarray  # (T, B, 4H) i, f, g, o (pre-activations for a variant cell);
    # overwritten by the backward pass
    cells: np.ndarray  # (T, B, H)
    peephole: Optional[np.ndarray] = None  # (3H,) with peepholes
    h_mask: Optional[np.ndarray] = None  # (B, H_out): recurrent dropout, training only


class KeptLayer(NamedTuple):
    input: np.ndarray  # (T, B, D_k) time-major, contiguous
    output: np.ndarray  # (T, B, dirs * H_out), zero past each row's length
    directions: list


# -- validating a call ------------------------------------------------------


def prepare(config: Config, x, hx, lengths) -> Call:
    """Validate a call's arguments; x becomes a (T, B, D) view, states (L*dirs, B, .)."""
    x_time_major, unbatched, batch_first = time_major(config, "x", x)
    steps, batch = x_time_major.shape[:2]
    if lengths is not None:
        if unbatched:
            raise ValueError("lengths applies to batched input; x is unbatched (T, D)")
        lengths = as_lengths(lengths, batch, steps)
    h0, c0 = initial_states(config, hx, batch, unbatched)
    return Call(x_time_major, h0, c0, lengths, unbatched, batch_first)


def time_major(config: Config, name, x):
    """(x as a (T, B, D) view in the model dtype, unbatched, batch_first for this x)."""
    x = as_real_array(name, x, config.dtype)
    unbatched = check_input(x, config.input_size)
    if unbatched:
        x = x[:, None, :]
    batch_first = config.batch_first and not unbatched
    return (x.transpose(1, 0, 2) if batch_first else x), unbatched, batch_first


def check_input(x, input_size):
    """Check x's rank and feature size; return whether it is unbatched (2-D)."""
    if x.ndim not in (2, 3):
        raise ValueError(
            f"x must be 3-D (batched) or 2-D (unbatched), got {x.ndim}-D with shape {x.shape}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"x must have input_size={input_size} features in its last axis, "
            f"got shape {x.shape}")
    return x.ndim == 2


def initial_states(config: Config, hx, batch, unbatched, name="hx"):
    """(h0, c0), each a new C-order (layers * directions, B, features) array, from hx
    or zeros: never the caller's, so the kernel may turn them into the final state.

    `name` is what error messages call hx (a stream calls it "state").
    """
    layers = config.num_layers * config.num_directions
    h_shape = (layers, batch, config.output_size)
    c_shape = (layers, batch, config.hidden_size)
    if hx is None:
        return np.zeros(h_shape, config.dtype), np.zeros(c_shape, config.dtype)
    check_state_pair(name, hx)
    states = []
    for position, (part, value, shape) in enumerate(
            (("h0", hx[0], h_shape), ("c0", hx[1], c_shape))):
        argument = f"{name}[{position}] ({part})"
        expected = (shape[0], shape[2]) if unbatched else shape
        state = check_shape(argument, as_real_array(argument, value, config.dtype), expected)
        states.append(np.array(state.reshape(shape), order="C"))
    return states


def check_state_pair(name, value):
    """Refuse anything but a pair (h, c), saying what came instead."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple (h0, c0), got {type(value).__name__}")
    if len(value) != 2:
        raise TypeError(
            f"{name} must be a tuple (h0, c0) of 2 arrays, got a {type(value).__name__} "
            f"of {len(value)} items")


# -- the weights as the kernel reads them --------------------------------------


def kernel_weights(model, config: Config, directions=None, copy=False):
    """[[(w_ih, w_hh, b_ih, b_hh, w_hr or None, peephole or None) per direction] per
    layer]; without biases b_ih is zeros and b_hh None.

    The model's parameters are validated when they are assigned (shape, dtype,
    C order, alignment), so they are read as they are, at every call (users may
    change them in place); copy=True gives copies that later changes to the
    model do not reach (training keeps them).
    """
    # The names depend on the configuration only: the model keeps them (LSTM._start).
    names = (model._weight_names if directions is None
             else weight_names(config, tuple(directions)))
    weights = []
    for layer_names in names:
        per_direction = []
        for direction_names in layer_names:
            params = tuple(None if name is None else getattr(model, name)
                           for name in direction_names)
            if copy:
                # aligned as the kernel wants w_hh: it would copy it again otherwise
                params = tuple(None if value is None else aligned_copy(value, value.dtype)
                               for value in params)
            if params[2] is None:  # no biases: the kernel adds zeros
                gates = 4 * config.hidden_size
                params = params[:2] + (np.zeros(gates, config.dtype),) + params[3:]
            per_direction.append(params)
        weights.append(per_direction)
    return weights


def weight_names(config: Config, directions=None):
    """Per layer, per direction: the names of (w_ih, w_hh, b_ih, b_hh, w_hr, peephole),
    None for what the configuration lacks."""
    directions = range(config.num_directions) if directions is None else directions
    names = []
    for layer in range(config.num_layers):
        per_direction = []
        for direction in directions:
            w_ih, w_hh, *rest = [name for name, _ in layer_layout(config, layer, direction)]
            b_ih, b_hh = rest[:2] if config.bias else (None, None)
            w_hr = rest[2 * config.bias] if config.proj_size else None
            peephole = rest[-1] if config.peepholes else None
            per_direction.append((w_ih, w_hh, b_ih, b_hh, w_hr, peephole))
        names.append(tuple(per_direction))
    return tuple(names)


# -- running --------------------------------------------------------------------


def forward(config: Config, weights, call: Call, workers=1):
    """The model call: `(output, (h_n, c_n))` in the user's layout.

    With workers > 1 the batch is split over threads, or a bidirectional
    model's two directions run side by side: with two workers that beat the
    batch split (151 ms against 161, and 187 for 2-thread BLAS, two layers at
    (100, 32, 128, 256), AMD EPYC AVX2), but on another day's EPYC VM the
    split took 202 ms and 2-thread BLAS 145: in "measure" mode the plan tries
    both (_plan.thread_scheme).
    """
    steps, batch = call.x_time_major.shape[:2]
    directions_only = config.bidirectional and workers == 2
    split = workers > 1 and batch > 1 and not directions_only
    scheme = trial = None
    if split or (workers > 1 and config.bidirectional):
        scheme, trial = _plan.thread_scheme(config, steps, batch, workers)
    started = time.perf_counter()
    if scheme == "blas":  # one time loop over the process's BLAS threads
        output, h_n, c_n = _forward_whole(config, weights, call.x_time_major, call.h0, call.c0,
                                          call.lengths, call.batch_first, 1)
    elif split:
        output, h_n, c_n = _forward_split(config, weights, call, min(workers, batch))
    else:
        output, h_n, c_n = _forward_whole(config, weights, call.x_time_major, call.h0, call.c0,
                                          call.lengths, call.batch_first, workers)
    if trial is not None:
        trial.record(scheme, time.perf_counter() - started)
    if call.unbatched:
        return output[:, 0], (h_n[:, 0], c_n[:, 0])
    return output, (h_n, c_n)


def common_case(config: Config):
    """Whether `forward_common` may run a model of this configuration: one direction,
    time-major, the plain cell (the model keeps the answer: LSTM._start)."""
    return not (config.batch_first or config.bidirectional or config.reverse
                or config.go_backwards or not config.plain_cell)


def forward_common(model, config: Config, x):
    """`model(x)` without hx and lengths on one thread, when x is an aligned C-order
    (T, B, D) ndarray of the model's dtype and common_case(config); else None.

    The same kernel calls as prepare + forward, so bit-identical results, with
    less Python around them: after a long sequence the interpreter's own data
    are out of the caches, and a microsecond of Python measured in a loop cost
    about ten after a call at config a (AMD EPYC).
    """
    if not (type(x) is np.ndarray and x.dtype is config.dtype and x.ndim == 3
            and x.shape[2] == config.input_size):
        return None
    flags = x.flags
    if not (flags.c_contiguous and flags.aligned):
        return None
    steps, batch, layers = x.shape[0], x.shape[1], config.num_layers
    h_n = np.zeros((layers, batch, config.output_size), config.dtype)
    c_n = np.zeros((layers, batch, config.hidden_size), config.dtype)
    if layers == 1 and config.bias:
        return one_kernel_call(model, config, x, h_n[0], c_n[0]), (h_n, c_n)
    output, _, _ = walk(config, kernel_weights(model, config), x, h_n, c_n)
    return output, (h_n, c_n)


def one_kernel_call(model, config: Config, x, h, c):
    """The output of a one-layer model with biases in common_case(config) over a
    kernel-ready x (T, B, D), h (B, H_out) and c (B, H) turned into the final
    state: the kernel called directly, as walk would call it (bit-identical).
    The walk's generality (lists, partials, the output layout) cost a T=1 call
    a third of its time (11 of 33 us, AMD EPYC)."""
    (names,), = model._weight_names
    w_ih, w_hh, b_ih, b_hh, w_hr = (None if name is None else getattr(model, name)
                                    for name in names[:5])
    steps, batch = x.shape[0], x.shape[1]
    output = np.empty((steps, batch, config.output_size), config.dtype)
    options = _plan.kernel_options(config.dtype, steps, batch, config.input_size,
                                   config.hidden_size, config.proj_size, 1)
    kernel = _FORWARD_LAYER[config.dtype.char]
    if w_hr is None:
        kernel(x, w_ih, w_hh, b_ih, h, c, output, bias_hh=b_hh, **options)
    else:
        kernel(x, w_ih, w_hh, b_ih, h, c, output, bias_hh=b_hh, w_hr=w_hr, **options)
    return output


def _forward_whole(config, weights, x_time_major, h0, c0, lengths, batch_first, workers,
                   plan_workers=None):
    # h0 and c0 are the call's own (initial_states), (L * dirs, rows, .) with
    # contiguous (rows, .) slices: the kernel turns them into the final state.
    output, output_time_major, _ = walk(config, weights, x_time_major, h0, c0,
                                        lengths, batch_first=batch_first, workers=workers,
                                        plan_workers=plan_workers)
    if lengths is not None and config.padding == "carry":
        carry_last_valid(output_time_major[:, :, :config.output_size], lengths)
    return output, h0, c0


def _forward_split(config, weights, call, workers):
    """The batch cut into `workers` parts, each run whole on its own thread (each
    turning its rows of the call's h0 and c0 into the final state)."""
    x, h0, c0, lengths = call.x_time_major, call.h0, call.c0, call.lengths
    bounds = np.linspace(0, x.shape[1], workers + 1).astype(int)
    parts = [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
    results = _parallel.run_all(
        [lambda rows=rows: _forward_whole(
            config, weights, x[:, rows], h0[:, rows], c0[:, rows],
            None if lengths is None else lengths[rows], False, 1, plan_workers=workers)
         for rows in parts], workers)
    output, output_time_major = new_output(
        x.shape[0], x.shape[1], config.num_directions * config.output_size, config.dtype,
        call.batch_first, False)
    for rows, (part_output, _, _) in zip(parts, results):
        output_time_major[:, rows] = part_output
    return output, h0, c0


def walk(config: Config, weights, x_time_major, h, c, lengths=None, *, batch_first=False,
         workers=1, keep=False, plan_workers=None, h_masks=None, dropout_masks=None):
    """Run every layer and direction of `weights` over x (T, B, D), any view.

    h[i] and c[i], i = layer * directions + direction, are C-contiguous (B, .)
    arrays (h and c: lists of them, or (L * dirs, B, .) arrays) that the kernel
    turns from the initial into the final state.
    Padding past `lengths` is zeros here (the caller applies "carry").
    With workers > 1 the two directions of a layer run side by side. Each
    kernel call runs as the plan for its shape says (cylstm/_plan.py);
    plan_workers (default: workers) is the thread scheme the plan is for.
    Training only: h_masks[i] (B, H_out) is recurrent dropout for index i
    (see forward_layer's h_mask); dropout_masks[k] (T, B, F) multiplies the
    output of layer k < last before layer k + 1 reads it.
    Returns (output in the user's layout, its (T, B, F) view, kept): kept is
    one KeptLayer per layer with keep=True (for backward), else None.
    """
    steps, batch = x_time_major.shape[:2]
    width, dtype = config.output_size, config.dtype
    directions = len(weights[0])
    plan_workers = workers if plan_workers is None else plan_workers
    kept: Optional[list[KeptLayer]] = [] if keep else None
    if config.go_backwards:  # Keras: each row read from its end; output in that order
        x_time_major = reversed_rows(x_time_major, lengths)
    layer_input = kernel_input(x_time_major)
    last = len(weights) - 1
    for layer, layer_weights in enumerate(weights):
        output, output_time_major = new_output(
            steps, batch, directions * width, dtype, batch_first and layer == last,
            lengths is not None)
        options = _plan.kernel_options(dtype, steps, batch, layer_input.shape[2],
                                       config.hidden_size, config.proj_size, plan_workers)
        first = layer * directions
        tasks = [functools.partial(
            _run_direction, config, direction, layer_input, layer_weights[direction],
            h[first + direction], c[first + direction],
            output_time_major if directions == 1 else
            output_time_major[:, :, direction * width:(direction + 1) * width],
            lengths, options, keep, None if h_masks is None else h_masks[first + direction])
            for direction in range(directions)]
        if directions == 1:  # called directly: a one-step stream call is mostly overhead
            ran = [tasks[0]()]
        else:
            ran = _parallel.run_all(tasks, 2) if workers > 1 else [task() for task in tasks]
        if kept is not None:
            kept.append(KeptLayer(layer_input, output_time_major, ran))
        layer_input = output_time_major
        if dropout_masks is not None and layer != last:
            layer_input = output_time_major * dropout_masks[layer]
    return output, output_time_major, kept


def _run_direction(config, direction, layer_input, direction_weights, h, c, out, lengths,
                   options, keep, h_mask=None):
    """One kernel call: a layer's direction over the whole sequence. Returns what
    backpropagation needs with keep=True, else None."""
    w_ih, w_hh, bias, bias_hh, w_hr, peephole = direction_weights
    kernel = _FORWARD_LAYER[w_ih.dtype.char]
    reverse = runs_reversed(config, direction)
    variant = cell_options(config, direction, peephole)
    if not (keep or lengths is not None or reverse or w_hr is not None or variant):
        # The common case, with no keywords for the kernel to parse but bias_hh and
        # the plan's (each one cost a one-step stream call about 0.1-0.3 us).
        kernel(layer_input, w_ih, w_hh, bias, h, c, out, bias_hh=bias_hh, **options)
        return None
    act = cells = None
    if keep:
        steps, batch = layer_input.shape[:2]
        hidden = w_ih.shape[0] // 4
        allocate = np.zeros if lengths is not None else np.empty  # zero past the lengths
        act = allocate((steps, batch, 4 * hidden), w_ih.dtype)
        cells = np.empty((steps, batch, hidden), w_ih.dtype)
    kernel(layer_input, w_ih, w_hh, bias, h, c, out, w_hr=w_hr, bias_hh=bias_hh,
           lengths=lengths, reverse=reverse, keep_act=act, keep_c=cells, h_mask=h_mask,
           **options, **variant)
    if not keep:
        return None
    return KeptDirection(w_ih, w_hh, w_hr, act, cells, peephole=peephole, h_mask=h_mask)


# forward_layer's specialisations by dtype character: calling one directly skips
# Cython's run-time dispatch over the fused type (about 0.35 us a call).
_FUSED: Any = _lstm.forward_layer  # indexed by type name: not in the stub's signature
_FORWARD_LAYER = {"f": _FUSED["float"], "d": _FUSED["double"]}


# -- the cell's variants, per direction ------------------------------------------


def runs_reversed(config: Config, direction):
    """Whether (a layer's) `direction` reads each row from its last valid step."""
    return direction == 1 or config.reverse


def cell_options(config: Config, direction, peephole=None):
    """The variant keywords of forward_layer/backward_layer for one direction;
    {} for the plain cell, so that it runs the fused cell untouched."""
    options = _variant_options(config, direction)
    return {**options, "peephole": peephole} if options else options


@functools.lru_cache(maxsize=64)
def _variant_options(config: Config, direction):
    if config.plain_cell:
        return {}
    return {"clip": config.clip, "input_forget": config.input_forget,
            "activations": tuple(config.direction_activations(direction))}


def reversed_rows(x_time_major, lengths):
    """A copy of x (T, B, D) with each row's valid steps in reverse order (an
    involution: it also turns a go_backwards output or gradient back)."""
    if lengths is None:
        return np.ascontiguousarray(x_time_major[::-1])
    steps = np.arange(x_time_major.shape[0])[:, None]
    times = np.where(steps < lengths[None, :], lengths[None, :] - 1 - steps, steps)
    return x_time_major[times, np.arange(x_time_major.shape[1])[None, :]]


# -- arrays for the kernel -------------------------------------------------------


def kernel_input(array):
    """`array` as the kernel reads it: itself if it is kernel-ready, else an aligned
    C-contiguous copy (byte strides, negative strides, misaligned data)."""
    flags = array.flags
    if (flags.c_contiguous and flags.aligned) or is_kernel_ready(array, array.dtype):
        return array  # (the first test is the common case's, cheaper)
    return np.array(array, order="C")


def new_output(steps, batch, features, dtype, batch_first, zero_padding):
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
