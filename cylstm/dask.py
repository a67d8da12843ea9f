"""cylstm over dask arrays chunked along time and batch: data larger than memory.

    import dask.array as da
    from cylstm.dask import forward

    x = da.random.random((10**7, 64, 8), chunks=(10**5, 16, 8))    # (T, B, D)
    out, (h_n, c_n) = forward(model, x)           # lazy dask arrays, nothing computed

The graph: for layer l, direction d, batch chunk j and time chunk k, one task
runs a one-layer, one-direction copy of the model over block (k, j), starting
from the (h, c) that block k-1 left (k+1 for the reverse direction, which walks
the time chunks from the last). Layer l > 0 reads the output blocks of layer
l-1, both directions side by side. Batch chunks never meet, so the graph is a
wavefront over (batch chunk, time chunk, layer); the output keeps x's chunks.
Each task holds one block and one state: a unidirectional model streams a
sequence longer than memory. Two things make that hold on a real scheduler:
x's blocks are held back until the chain is near them (otherwise an idle thread
makes them all at once), and the workers need a second thread, since dask runs
the state chain, its longest path, before the output's consumers whenever both
are ready. A bidirectional (or reverse=True) layer must see a sequence's end
before its start, so dask keeps the blocks its reverse direction still needs.

Every task runs the same compiled kernel through the public model call, so the
results equal one in-memory call of the model within rounding.
"""
from collections import Counter

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.blockwise import optimize_blockwise
    from dask.core import flatten, istask
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - the tests need dask
    raise ImportError(
        'cylstm.dask needs dask with its array module: pip install "dask[array]" '
        '(and distributed for a cluster)') from exc

from . import _parallel
from .model import LSTM
from ._validation import as_lengths

__all__ = ["forward"]

# Layer 0 of a unidirectional model reads x's block k once the last layer has finished
# block k - INPUT_LEAD: one block is made while the one before it runs.
INPUT_LEAD = 2


def forward(model, x, hx=None, lengths=None):
    """Run `model` over the dask array `x`; return `(output, (h_n, c_n))`, all lazy.

    Parameters
    ----------
    model : cylstm.LSTM
        Any configuration but go_backwards. The graph holds a copy of its weights as
        they are now.
    x : dask array, (T, B, D), (B, T, D) with model.batch_first, or unbatched (T, D)
        Chunked along time and batch in any way (chunks of one step, uneven
        chunks), but not along the features. Converted to the model's dtype.
    hx : (h0, c0), NumPy or dask arrays, optional
        As for the model call: (num_layers * num_directions, B, H_out) and
        (..., B, H) (no B axis unbatched); zeros if omitted.
    lengths : (B,) integers in [1, T], NumPy or dask array, optional
        Per-row valid steps, with the model's semantics (padding "zeros" or
        "carry"). Values of a dask array are checked when the graph runs.

    Returns
    -------
    output : dask array laid out as the model's output, with x's chunks along
        time and batch and one chunk along the features.
    (h_n, c_n) : dask arrays laid out as h0 and c0, one chunk per layer and
        direction, x's chunks along the batch.

    Each task limits BLAS to one thread (with threadpoolctl, when installed): a
    dask worker thread runs one task at a time, so k worker threads keep k
    cores busy without k BLAS pools competing for them. model.num_threads is
    not used; dask supplies the parallelism.
    """
    if not isinstance(model, LSTM):
        raise TypeError(f"model must be a cylstm.LSTM, got {type(model).__name__}")
    if model.go_backwards:
        raise NotImplementedError(
            "cylstm.dask.forward does not run go_backwards models: their output is in "
            "reversed time, which does not map onto x's time chunks; use reverse=True "
            "(output in input order) or reverse x yourself")
    x, unbatched = _time_major_input(model, x)
    steps, batch = x.shape[:2]
    batch_chunks = x.chunks[1]
    h0, c0 = _initial_states(model, hx, batch, batch_chunks, unbatched)
    if lengths is not None:
        if unbatched:
            raise ValueError("lengths applies to batched input; x is unbatched (T, D)")
        lengths = _lengths_array(lengths, batch, steps, batch_chunks)

    token = tokenize(x.name, model.config(), model.state_dict(),
                     *(a.name for a in (h0, c0, lengths) if a is not None))
    graph = _Graph(model, x, h0, c0, lengths, token)
    output = graph.output()
    h_n, c_n = graph.final_states()
    if unbatched:
        return output[:, 0], (h_n[:, 0], c_n[:, 0])
    if model.batch_first:
        output = output.transpose(1, 0, 2)
    return output, (h_n, c_n)


# -- checking and aligning the arguments ------------------------------------

def _time_major_input(model, x):
    """x as a (T, B, D) dask array of the model dtype; and whether it was unbatched."""
    if not isinstance(x, da.Array):
        raise TypeError(
            f"x must be a dask array, got {type(x).__name__}; wrap an in-memory array with "
            "dask.array.from_array(x, chunks=...) or call the model directly")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"x must be 3-D (batched) or 2-D (unbatched), got {x.ndim}-D with shape {x.shape}")
    if any(np.isnan(size) for size in x.shape):
        raise ValueError(
            f"x must have known chunk sizes, got shape {x.shape}; call x.compute_chunk_sizes()")
    if x.shape[-1] != model.input_size:
        raise ValueError(
            f"x must have input_size={model.input_size} features in its last axis, "
            f"got shape {x.shape}")
    if len(x.chunks[-1]) > 1:
        raise ValueError(
            f"x must not be chunked along its feature axis (axis {x.ndim - 1}): got chunks "
            f"{x.chunks[-1]} there; rechunk with x.rechunk({{{x.ndim - 1}: -1}})")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
    x = x.astype(model.dtype)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif model.batch_first:
        x = x.transpose(1, 0, 2)
    return x, unbatched


def _initial_states(model, hx, batch, batch_chunks, unbatched):
    """(h0, c0) as dask arrays chunked (1, x's batch chunks, all features); None, None if hx is."""
    if hx is None:
        return None, None
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"hx must be a tuple (h0, c0), got {type(hx).__name__}")
    layers = model.num_layers * model.num_directions
    states = []
    for position, (name, value, width) in enumerate(
            (("h0", hx[0], model.output_size), ("c0", hx[1], model.hidden_size))):
        state = value if isinstance(value, da.Array) else da.asarray(np.asarray(value))
        expected = (layers, width) if unbatched else (layers, batch, width)
        if state.shape != expected:
            raise ValueError(f"hx[{position}] ({name}) must have shape {expected}, "
                             f"got {state.shape}")
        if state.dtype.kind not in "biuf":
            raise TypeError(f"hx[{position}] ({name}) must hold real numbers, "
                            f"got dtype {state.dtype}")
        if unbatched:
            state = state[:, None, :]
        states.append(state.astype(model.dtype).rechunk((1, batch_chunks, width)))
    return states


def _lengths_array(lengths, batch, steps, batch_chunks):
    """lengths as a (B,) intp dask array chunked as x's batch."""
    if isinstance(lengths, da.Array):
        if lengths.shape != (batch,):
            raise ValueError(
                f"lengths must have one entry per row of x: shape ({batch},), "
                f"got {lengths.shape}")
        if lengths.dtype.kind not in "iu":
            raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
        return lengths.astype(np.intp).rechunk((batch_chunks,))
    if np.ndim(lengths) == 1 and len(lengths) != batch:
        raise ValueError(
            f"lengths must have one entry per row of x: {batch} rows, got {len(lengths)}")
    return da.from_array(as_lengths(lengths, batch, steps), chunks=(batch_chunks,))


# -- the graph -------------------------------------------------------------

class _Graph:
    """The tasks of one forward call, named by its token.

    Keys: (core, "model", l, d) holds the one-layer model of layer l and
    direction d; (core, l, d, k, j) the result (output, h, c) of that model over
    time chunk k of batch chunk j.
    """

    def __init__(self, model, x, h0, c0, lengths, token):
        self.model = model
        self.x, self.h0, self.c0, self.lengths = x, h0, c0, lengths
        if not _backwards_first(model):  # x's blocks are held back (see _layer_input)
            # Elementwise steps fused into x's last layer first, as dask would.
            graph = optimize_blockwise(x.__dask_graph__(), keys=list(flatten(x.__dask_keys__())))
            self.x = da.Array(graph, x.name, x.chunks, meta=np.empty((0, 0, 0), x.dtype))
            self.x_tasks = dict(graph)
            self.x_dependents = Counter(dependency for task in self.x_tasks.values()
                                        for dependency in getattr(task, "dependencies", ()))
        self.core = f"cylstm-lstm-{token}"
        self.token = token
        self.time_chunks, self.batch_chunks = x.chunks[:2]
        self.tasks = {}
        self._build()

    def _build(self):
        model = self.model
        starts = np.cumsum((0,) + self.time_chunks[:-1]).tolist()
        total = sum(self.time_chunks)
        n_time, n_batch = len(self.time_chunks), len(self.batch_chunks)
        if self.lengths is not None:
            for j in range(n_batch):
                self.tasks[(self.core, "lengths", j)] = (
                    _checked_lengths, (self.lengths.name, j), total)
        for layer in range(model.num_layers):
            last = layer == model.num_layers - 1
            for direction in range(model.num_directions):
                model_key = (self.core, "model", layer, direction)
                self.tasks[model_key] = _direction_model(model, layer, direction)
                reverse = direction == 1 or model.reverse
                carry = last and not reverse and model.padding == "carry" \
                    and self.lengths is not None
                walk = range(n_time - 1, -1, -1) if reverse else range(n_time)
                for j in range(n_batch):
                    previous = self._initial_state(layer * model.num_directions + direction, j)
                    for k in walk:
                        key = (self.core, layer, direction, k, j)
                        self.tasks[key] = (
                            _run_block, model_key, self._layer_input(layer, k, j), previous,
                            None if self.lengths is None else (self.core, "lengths", j),
                            starts[k], reverse, carry)
                        previous = key

    def _layer_input(self, layer, k, j):
        """The key (or inline task) that gives layer `layer`'s input block (k, j)."""
        if layer == 0:
            x_key = (self.x.name, k, j, 0)
            task = None if _backwards_first(self.model) or k < INPUT_LEAD \
                else self._x_task(x_key)
            if task is None:
                return x_key
            # x's block as a task of ours that waits for the last layer's block
            # INPUT_LEAD chunks back: x's own blocks have no dependencies, so a scheduler
            # with an idle thread would otherwise make all of them (and the first layers
            # run ahead on them) long before the chain needs them; it did hold 67 of 80
            # blocks at once on two workers. The same task runs (inline), so x's graph is
            # read, not changed. Bidirectional layers need the sequence's end first and
            # are not held back.
            gated = (self.core, "x", k, j)
            self.tasks[gated] = (_after, task,
                                 (self.core, self.model.num_layers - 1, 0, k - INPUT_LEAD, j))
            return gated
        return (_layer_output, [(self.core, layer - 1, d, k, j)
                                for d in range(self.model.num_directions)])

    def _x_task(self, key):
        """The task that makes x's block `key`, with the source tasks that feed only it
        (a random draw, a file read) inlined, so that holding it back holds them back;
        None when the block is data already (in memory, a persisted future)."""
        task = self.x_tasks.get(key)
        if not istask(task):
            return None
        sources = {dependency: self.x_tasks[dependency]
                   for dependency in getattr(task, "dependencies", ())
                   if self.x_dependents[dependency] == 1
                   and istask(self.x_tasks.get(dependency))
                   and not getattr(self.x_tasks[dependency], "dependencies", True)}
        return task.substitute(sources) if sources else task

    def _initial_state(self, index, j):
        if self.h0 is None:
            return None
        return [(self.h0.name, index, j, 0), (self.c0.name, index, j, 0)]

    def _array(self, name, tasks, chunks):
        """A dask array over the core tasks plus `tasks`, named `name`."""
        inputs = [a for a in (self.x, self.h0, self.c0, self.lengths) if a is not None]
        layers, dependencies = {}, {}
        for collection in inputs:
            graph = collection.__dask_graph__()
            layers.update(graph.layers)
            dependencies.update(graph.dependencies)
        layers[self.core] = self.tasks
        dependencies[self.core] = {layer for a in inputs for layer in a.__dask_layers__()}
        layers[name] = tasks
        dependencies[name] = {self.core}
        meta = np.empty((0,) * len(chunks), self.model.dtype)
        return da.Array(HighLevelGraph(layers, dependencies), name, chunks, meta=meta)

    def output(self):
        """The last layer's output, (T, B, num_directions * H_out), chunked as x."""
        model, name = self.model, f"cylstm-output-{self.token}"
        last = model.num_layers - 1
        tasks = {(name, k, j, 0): (_layer_output, [(self.core, last, d, k, j)
                                                   for d in range(model.num_directions)])
                 for k in range(len(self.time_chunks)) for j in range(len(self.batch_chunks))}
        features = model.num_directions * model.output_size
        return self._array(name, tasks, (self.time_chunks, self.batch_chunks, (features,)))

    def final_states(self):
        """(h_n, c_n): each direction's state after its last time chunk (the first, backwards)."""
        model = self.model
        arrays = []
        for part, width in ((1, model.output_size), (2, model.hidden_size)):
            name = f"cylstm-{'hc'[part - 1]}_n-{self.token}"
            tasks = {}
            for layer in range(model.num_layers):
                for direction in range(model.num_directions):
                    k = 0 if direction == 1 or model.reverse else len(self.time_chunks) - 1
                    index = layer * model.num_directions + direction
                    for j in range(len(self.batch_chunks)):
                        tasks[(name, index, j, 0)] = (
                            _part, (self.core, layer, direction, k, j), part)
            layers = model.num_layers * model.num_directions
            arrays.append(self._array(name, tasks, ((1,) * layers, self.batch_chunks, (width,))))
        return arrays


def _backwards_first(model):
    """Whether a layer needs a sequence's end before its start (a reverse direction)."""
    return model.bidirectional or model.reverse


def _direction_model(model, layer, direction):
    """A one-layer, forward-only LSTM with the weights and cell of (layer, direction)."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    weights = {name.replace(suffix, "_l0"): value for name, value in model.state_dict().items()
               if name.endswith(suffix)}
    inputs = model.input_size if layer == 0 else model.num_directions * model.output_size
    config = model._config
    single = LSTM(inputs, model.hidden_size, bias=model.bias, proj_size=model.proj_size,
                  dtype=model.dtype, seed=0, peepholes=config.peepholes, clip=config.clip,
                  input_forget=config.input_forget,
                  activations=config.direction_activations(direction))
    single.load_state_dict(weights)
    return single


# -- the tasks ---------------------------------------------------------------

def _after(value, _):
    """value, once the task named second has run."""
    return value


def _part(result, index):
    """One item of a block's (output, h, c)."""
    return result[index]


def _layer_output(results):
    """A layer's output block from its directions' block results, forward first."""
    if len(results) == 1:
        return results[0][0]
    return np.concatenate([result[0] for result in results], axis=2)


def _checked_lengths(lengths, steps):
    """A block of lengths, checked now for a dask array whose values were unknown."""
    if lengths.size and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(
            f"lengths must lie in [1, {steps}] (the sequence length T), "
            f"got values from {lengths.min()} to {lengths.max()}")
    return lengths


def _run_block(model, x, state, lengths, start, reverse, carry):
    """One direction of one layer over block x (t, b, D) from `state`; returns (output, h, c).

    state: None (zeros) or a sequence ending in h (1, b, H_out), c (1, b, H).
    lengths: the rows' full lengths (b,) or None; start: the block's first step.
    reverse: run each row backwards from its last valid step in the block.
    carry: padded steps repeat the row's last valid output (model padding "carry").
    """
    steps, batch = x.shape[:2]
    if state is None:
        h = np.zeros((1, batch, model.output_size), model.dtype)
        c = np.zeros((1, batch, model.hidden_size), model.dtype)
    else:
        h, c = state[-2:]
    valid = None if lengths is None else np.clip(lengths - start, 0, steps)
    with _parallel.single_threaded_blas():  # one BLAS thread per task, however many run
        if valid is None or valid.min() == steps:  # every row runs the whole block
            if not reverse:
                output, (h, c) = model(x, (h, c))
                return output, h, c
            output, (h, c) = model(x[::-1], (h, c))
            return output[::-1], h, c
        output, h, c = _run_rows(model, x, h, c, valid, reverse)
    if carry:
        # A forward output at a row's last valid step is its h, which stays put after it.
        padded = np.arange(steps)[:, None] >= valid[None, :]
        output = np.where(padded[:, :, None], h, output)
    return output, h, c


def _run_rows(model, x, h, c, valid, reverse):
    """The block for rows with valid[b] in [0, t] steps: rows with none keep their state
    and output zeros (the model call needs at least one step per row)."""
    steps, batch = x.shape[:2]
    active = np.flatnonzero(valid)
    output = np.zeros((steps, batch, model.output_size), model.dtype)
    h, c = h.copy(), c.copy()
    if active.size == 0:
        return output, h, c
    rows = slice(None) if active.size == batch else active
    x_rows, valid_rows = x[:, rows], valid[rows]
    if reverse:
        # A forward model over each row reversed within its valid steps is the
        # reverse direction; padded steps stay in place and output zeros.
        order = _reversal(valid_rows, steps)[:, :, None]
        x_rows = np.take_along_axis(x_rows, order, axis=0)
    out_rows, (h[:, rows], c[:, rows]) = model(x_rows, (h[:, rows], c[:, rows]),
                                               lengths=valid_rows)
    if reverse:
        out_rows = np.take_along_axis(out_rows, order, axis=0)
    output[:, rows] = out_rows
    return output, h, c


def _reversal(valid, steps):
    """Time indices (t, b) that reverse row b within its first valid[b] steps (an involution)."""
    t = np.arange(steps)[:, None]
    return np.where(t < valid[None, :], valid[None, :] - 1 - t, t)


# -- BLAS threads ---------------------------------------------------------------
