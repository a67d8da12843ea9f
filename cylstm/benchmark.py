"""Time cylstm's LSTM against its BLAS floor, NumPy, PyTorch and ONNX Runtime.

Run ``python -m cylstm.benchmark --quick`` (or ``python benchmarks/run.py --quick`` from a
checkout) for a table; ``--help`` lists the options. ``run()`` returns the raw results as a dict,
``format_table()`` and ``format_markdown()`` turn them into text, ``goals()`` lists the speed
goals met and missed, ``check_baseline()`` compares the key ratios with a committed baseline (a
regression check for CI) and ``plot_png()`` draws a chart.

The main table (``CONFIGS`` a to e) times one forward pass of one LSTM layer, float32, with:

``cylstm``
    The public model call, ``cylstm.LSTM(D, H)(x)``: validation, allocation and the kernel.
``kernel``
    ``cylstm._lstm.forward_layer`` with preallocated buffers: the compiled kernel alone.
``floor``
    The same kernel call with ``_gate_math=False``: exactly the same BLAS calls (one input
    projection gemm per time chunk, one recurrent gemm or gemv per step) and nothing else.
    No LSTM with these BLAS calls can be faster, so cylstm/floor is what the gate math and the
    Python layer cost (another plan of BLAS calls, or another BLAS, has another floor). Its
    output is not an LSTM's and is not checked.
``numpy``
    ``cylstm.numpy_lstm.lstm_numpy``: one big input matmul, a Python loop over time.
``torch``
    ``torch.nn.LSTM`` under ``torch.inference_mode()`` (when torch is installed).
``onnxruntime``
    A one-operator ONNX model (``LSTM``) run by ONNX Runtime (when onnx and onnxruntime are
    installed).

The sections (``EXTRA_CONFIGS``) time what else the model does, against torch and ONNX Runtime
with the same weights:

``bidir``
    A two-layer bidirectional model, one forward pass; ONNX Runtime runs ``model.to_onnx()``.
``varlen``
    A batch of sequences with lengths uniform in [T/4, T]: cylstm with ``lengths=``, cylstm on
    the full padded batch (``padded``: what padding costs), torch with ``pack_padded_sequence``
    + the LSTM + ``pad_packed_sequence``, ONNX Runtime with ``sequence_lens``.
``stream``
    Streaming latency: one time step per call, batch 1, state carried (``model.stream()`` vs.
    ``lstm(x_t, state)`` under ``torch.inference_mode()``); the median over every call.
``train-c``, ``train-s``
    One training step: ``forward_train`` + ``backward`` vs. torch's forward + ``backward`` of
    ``sum(output * grad)`` (``zero_grad`` each time), with the peak memory of cylstm's step.

Every timed call is a whole pass over the sequence (or, for ``stream``, one step), from zero
initial state. Within one (config, threads) cell the implementations are timed round-robin, one
call (or one block of steps) each per repeat, with the starting implementation rotated, so that
noise from other work on the machine hits them alike; before each timed call the process waits
(briefly) until the worker threads the previous call left spinning have gone idle, so that no
library pays for another's threads. The output of each implementation (for training: the output
and every gradient) is compared with cylstm's on the warm-up call of every cell; one that differs
by more than ``TOLERANCE`` (relative to max(1, |cylstm's value|)) is timed but flagged with ``!``
in the table and listed in the notes, and ``main()`` exits with status 1.

Thread counts: BLAS and OpenMP pools are limited with threadpoolctl (``threadpool_limits``) when
it is installed; torch gets ``torch.set_num_threads``; ONNX Runtime gets ``intra_op_num_threads``
(``inter_op_num_threads`` = 1). Without threadpoolctl the BLAS thread count cannot be set and the
rows say so (``threads_set: false``).

Only numpy and cylstm are needed to import this module; torch, onnx, onnxruntime, threadpoolctl,
tqdm and matplotlib are imported when used.
"""

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import sys
import time

import numpy as np

from ._atomic import atomic_write
from ._validation import aligned_copy
from ._version import __version__
from .numpy_lstm import lstm_numpy

__all__ = ["CONFIGS", "EXTRA_CONFIGS", "IMPLS", "EXTRA_IMPLS", "TOLERANCE", "GOALS",
           "BASELINE_RATIOS", "run", "format_table", "format_markdown", "goals", "key_ratios",
           "make_baseline", "check_baseline", "plot_png", "machine_info", "make_onnx_lstm",
           "main"]

#: name -> (T, B, D, H): sequence length, batch, input size, hidden size. One layer, one
#: direction, full-length sequences, float32: the main table.
CONFIGS = {
    "a": (1000, 1, 32, 64),
    "b": (500, 1, 128, 256),
    "c": (100, 32, 128, 256),
    "d": (100, 64, 512, 512),
    "e": (50, 256, 256, 256),
}

#: name -> (section, (T, B, D, H)): the sections after the main table. For ``stream``, T is the
#: number of one-step calls per timed block; the blocks of cylstm and torch alternate, 20 times
#: as many as the repeats of other cells (quick: 40-100 blocks, full: 300-600).
EXTRA_CONFIGS = {
    "bidir": ("bidirectional", (100, 32, 128, 256)),
    "varlen": ("lengths", (200, 32, 128, 256)),
    "train-c": ("training", (100, 32, 128, 256)),
    "train-s": ("training", (50, 32, 64, 128)),
    "stream": ("stream", (100, 1, 32, 64)),
}

#: Implementations of the main table, in table order. cylstm is the reference for the output
#: check.
IMPLS = ("cylstm", "kernel", "floor", "numpy", "torch", "onnxruntime")

#: Implementations that only the sections have: ``padded`` is cylstm on the full padded batch,
#: without ``lengths`` (section ``lengths``).
EXTRA_IMPLS = ("padded",)

#: Largest difference from cylstm's output that counts as agreement: max |x - cylstm| over
#: max(1, max |cylstm|) (the plain max abs difference for LSTM outputs, which are in [-1, 1]; a
#: relative one for gradients).
TOLERANCE = 1e-4

#: The speed goals: (measure, configs, op, target, label). Measures, all at one thread unless
#: said: "cylstm/floor", "cylstm/best" (cylstm over the faster of torch and onnxruntime),
#: "cylstm/torch", "threads 1/2" (cylstm's 1-thread time over its 2-thread time). A goal whose
#: cells were not run (or whose opponent is not installed) is left out.
GOALS = (
    ("cylstm/floor", ("a", "b", "c", "d", "e"), "<=", 1.30, "issue target"),
    ("cylstm/floor", ("a", "b", "c", "d", "e"), "<=", 1.10, "strict"),
    ("cylstm/best", ("a", "b"), "<=", 0.80, "batch 1"),
    ("cylstm/best", ("c", "d", "e"), "<=", 1.15, "batched"),
    ("cylstm/torch", ("train-c", "train-s"), "<=", 1.00, "training"),
    ("cylstm/torch", ("stream",), "<=", 0.50, "streaming"),
    ("threads 1/2", ("c", "d", "e"), ">=", 1.60, "2-thread speed-up"),
)

_MEASURE_TEXT = {
    "cylstm/floor": "cylstm/floor",
    "cylstm/best": "cylstm/min(torch, ort)",
    "cylstm/torch": "cylstm/torch",
    "threads 1/2": "cylstm 1 thread / 2 threads",
}

#: The ratios the CI regression check compares with benchmarks/baseline.json: (measure,
#: configs), one thread. Ratios, never absolute times: both sides of a ratio are timed
#: interleaved, so a busy machine moves them much less than it moves times.
BASELINE_RATIOS = (
    ("cylstm/floor", ("a", "b", "c", "d", "e")),
    ("cylstm/torch", ("train-c", "train-s", "stream")),
)

#: A ratio fails the regression check when it exceeds this many times its baseline value
#: (unless the baseline file says otherwise): only a gross regression, not noise.
BASELINE_FACTOR = 1.5

# Ratios shown in the main table: cylstm's time over each of these.
RATIO_IMPLS = ("floor", "torch", "onnxruntime", "numpy")

_SHORT = {"onnxruntime": "ort"}

# Repeat policy: (warm-up calls, min repeats, max repeats, seconds per cell). The number of
# repeats is the time budget over the time of one round (one call of every implementation),
# clipped to [min, max].
_POLICY = {
    "quick": (1, 2, 5, 1.0),
    "full": (2, 15, 30, 8.0),
}

# A cell during which other processes kept more than this many CPUs busy gets a warning note.
_BUSY_WARNING = 0.25

# Before each timed call the process is left to settle: idle worker threads of OpenBLAS keep
# spinning for about 0.1 s after a call returns (ONNX Runtime's and OpenMP's for less), and on a
# 2-core machine that spinning would be charged to whichever implementation runs next. So before
# each timed call we sleep in slices of _SETTLE_SLICE seconds until a slice in which this process
# used (almost) no CPU, for at most `settle` seconds (run()'s argument, default _SETTLE_MAX).
_SETTLE_SLICE = 0.005
_SETTLE_MAX = 0.3

# Streaming: the steps of the output check (from the zero state).
_STREAM_CHECK_STEPS = 50

DTYPE = np.float32


# ----------------------------------------------------------------------------------------------
# Machine information


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    """The SIMD flags that matter for the gate math, from /proc/cpuinfo (Linux x86 only)."""
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in flags]
    except OSError:
        pass
    return []


def _version(module_name):
    try:
        module = __import__(module_name)
    except Exception:  # noqa: BLE001 - any failure to import means "not available"
        return None
    return getattr(module, "__version__", "unknown")


def _blas_info():
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer",
            "architecture")
    libraries = []
    for lib in threadpool_info():
        entry = {key: lib.get(key) for key in keys if lib.get(key) is not None}
        entry["library"] = os.path.basename(lib.get("filepath", ""))
        libraries.append(entry)
    return libraries


def machine_info():
    """A dict describing this machine and the software versions in use."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]  # 1, 5, 15 minutes
    info["versions"] = {
        "cylstm": __version__,
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "torch": _version("torch"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "threadpoolctl": _version("threadpoolctl"),
    }
    try:
        from . import _lstm

        info["cylstm_simd_path"] = _lstm.simd_path()
    except Exception:  # noqa: BLE001 - informational only
        pass
    info["blas"] = _blas_info()
    return info


# ----------------------------------------------------------------------------------------------
# The implementations. Each builder takes (case, threads) and returns either a function that
# runs one timed call and returns what is compared with cylstm's (an ndarray, or a dict of
# them), or a _Measured object; it raises ImportError when its framework is not installed.


class _Measured:
    """How the cell runner drives one implementation.

    ``output()`` runs it once (a warm-up) and returns what is compared with cylstm's;
    ``timed()`` runs the measured operation once and returns its duration in seconds, as a list
    (a block of one-step calls returns one duration per call); ``estimate()`` is the seconds one
    ``timed()`` will take, from the last ``output()``.
    """

    def __init__(self, fn):
        self.fn = fn
        self._elapsed = 0.0

    def output(self):
        t0 = time.perf_counter()
        out = self.fn()
        self._elapsed = time.perf_counter() - t0
        return out

    def timed(self):
        t0 = time.perf_counter()
        self.fn()
        return [time.perf_counter() - t0]

    def estimate(self):
        return self._elapsed


class _Case:
    """The input, weights and cylstm model of one config of the main table."""

    def __init__(self, T, B, D, H, seed=0):
        from . import LSTM

        self.shape = (T, B, D, H)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((T, B, D)).astype(DTYPE)
        self.model = LSTM(D, H, dtype=DTYPE, seed=seed)
        sd = self.model.state_dict()
        self.w_ih = aligned_copy(sd["weight_ih_l0"], DTYPE)
        self.w_hh = aligned_copy(sd["weight_hh_l0"], DTYPE)
        self.b_ih = sd["bias_ih_l0"]
        self.b_hh = sd["bias_hh_l0"]
        self.bias = aligned_copy(self.b_ih + self.b_hh, DTYPE)

    def info(self):
        """Extra columns of this case's rows."""
        return {}


def _cylstm_threads(case, threads):
    """Give the cylstm model of `case` its own threading for an n-thread cell.

    With n > 1 cylstm runs one time loop over n-thread BLAS (its default), or, when the run
    asked for it (``case.split_threads``, ``--split``), ``model.num_threads = n``: the batch
    (or, at batch 1, the two directions) split over n threads with single-threaded BLAS.
    """
    model = case.model
    if hasattr(model, "num_threads"):
        split = threads > 1 and getattr(case, "split_threads", False)
        model.num_threads = threads if split else None


def _build_cylstm(case, threads):
    _cylstm_threads(case, threads)
    model, x = case.model, case.x

    def call():
        return model(x)[0]

    return call


def _build_kernel(case, threads, gate_math=True):
    from ._lstm import forward_layer

    T, B, D, H = case.shape
    x, w_ih, w_hh, bias = case.x, case.w_ih, case.w_hh, case.bias
    h = np.zeros((B, H), DTYPE)
    c = np.zeros((B, H), DTYPE)
    out = np.empty((T, B, H), DTYPE)

    def call():
        h.fill(0)
        c.fill(0)
        forward_layer(x, w_ih, w_hh, bias, h, c, out, _gate_math=gate_math)
        return out

    return call


def _build_floor(case, threads):
    return _build_kernel(case, threads, gate_math=False)


def _build_numpy(case, threads):
    x, w_ih, w_hh, bias = case.x, case.w_ih, case.w_hh, case.bias

    def call():
        return lstm_numpy(x, w_ih, w_hh, bias)[0]

    return call


def _torch_lstm(model, threads):
    """A torch.nn.LSTM with the architecture and (copied) weights of the cylstm `model`."""
    import torch

    torch.set_num_threads(threads)
    lstm = torch.nn.LSTM(model.input_size, model.hidden_size, num_layers=model.num_layers,
                         bidirectional=model.bidirectional)
    lstm.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(value))
                          for name, value in model.state_dict().items()})
    return lstm


def _build_torch(case, threads):
    import torch

    lstm = _torch_lstm(case.model, threads).eval()
    x = torch.from_numpy(case.x)

    def call():
        with torch.inference_mode():
            y, _ = lstm(x)
        return y.numpy()

    return call


def make_onnx_lstm(w_ih, w_hh, b_ih=None, b_hh=None, opset=14):
    """A serialized ONNX model with one ``LSTM`` node, from PyTorch-layout weights.

    PyTorch's gate order is i, f, g, o; ONNX's is i, o, f, c, with W (1, 4H, D), R (1, 4H, H)
    and B (1, 8H) = [Wb, Rb]. The model's input ``X`` is (T, B, D) float32 (any T and B); its
    output ``Y`` is (T, 1, B, H), ``Y_h`` and ``Y_c`` are (1, B, H).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w_ih = np.asarray(w_ih, dtype=np.float32)
    w_hh = np.asarray(w_hh, dtype=np.float32)
    H = w_hh.shape[1]
    D = w_ih.shape[1]
    b_ih = np.zeros(4 * H, np.float32) if b_ih is None else np.asarray(b_ih, np.float32)
    b_hh = np.zeros(4 * H, np.float32) if b_hh is None else np.asarray(b_hh, np.float32)
    order = [0, 3, 1, 2]  # ONNX gate k is PyTorch gate order[k]: i, o, f, g(c)

    def reorder(a):
        return a.reshape((4, H) + a.shape[1:])[order].reshape(a.shape)

    W = reorder(w_ih)[None]
    R = reorder(w_hh)[None]
    Bias = np.concatenate([reorder(b_ih), reorder(b_hh)])[None]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=H)
    graph = helper.make_graph(
        [node],
        "cylstm_benchmark_lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", D])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", H]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", H]),
         helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, "B", H])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                     numpy_helper.from_array(Bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="cylstm.benchmark")
    model.ir_version = min(model.ir_version, 8)  # readable by older onnxruntime releases too
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _ort_session(serialized_model, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(serialized_model, options, providers=["CPUExecutionProvider"])


def _build_onnxruntime(case, threads):
    import onnxruntime  # noqa: F401  (ImportError before the model is built)

    session = _ort_session(make_onnx_lstm(case.w_ih, case.w_hh, case.b_ih, case.b_hh), threads)
    T, B, D, H = case.shape
    feed = {"X": case.x}

    def call():
        return session.run(["Y"], feed)[0].reshape(T, B, H)

    return call


# -- section "bidirectional": a two-layer bidirectional model


class _BidirCase:
    """Two layers, both directions, full-length sequences."""

    layers = 2

    def __init__(self, T, B, D, H, seed=0):
        from . import LSTM

        self.shape = (T, B, D, H)
        self.x = np.random.default_rng(seed).standard_normal((T, B, D)).astype(DTYPE)
        self.model = LSTM(D, H, num_layers=self.layers, bidirectional=True, dtype=DTYPE,
                          seed=seed)

    def info(self):
        return {"layers": self.layers, "directions": 2}


def _build_model_onnxruntime(case, threads, lengths=None):
    """ONNX Runtime running cylstm's own export, ``model.to_onnx()``."""
    import onnxruntime  # noqa: F401

    proto = case.model.to_onnx(sequence_lens=lengths is not None)
    session = _ort_session(proto.SerializeToString(), threads)
    feed = {"X": case.x}
    if lengths is not None:
        feed["sequence_lens"] = np.asarray(lengths, np.int32)

    def call():
        return session.run(["Y"], feed)[0]

    return call


# -- section "lengths": a batch of sequences of different lengths


class _LengthsCase:
    """One layer; lengths drawn uniformly from [T/4, T] with a fixed seed."""

    def __init__(self, T, B, D, H, seed=0):
        from . import LSTM

        self.shape = (T, B, D, H)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((T, B, D)).astype(DTYPE)
        self.lengths = rng.integers(max(1, T // 4), T + 1, size=B)
        self.model = LSTM(D, H, dtype=DTYPE, seed=seed)
        self.x[np.arange(T)[:, None] >= self.lengths[None, :]] = 0  # padding, as users have it

    def info(self):
        T, B = self.shape[:2]
        return {"mean_length": round(float(self.lengths.mean()), 1),
                "valid_fraction": round(float(self.lengths.sum()) / (T * B), 3)}


def _build_lengths_cylstm(case, threads):
    _cylstm_threads(case, threads)
    model, x, lengths = case.model, case.x, case.lengths

    def call():
        return model(x, lengths=lengths)[0]

    return call


def _build_lengths_torch(case, threads):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    lstm = _torch_lstm(case.model, threads).eval()
    x = torch.from_numpy(case.x)
    lengths = torch.from_numpy(case.lengths.astype(np.int64))
    T = case.shape[0]

    def call():
        with torch.inference_mode():
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            y, _ = lstm(packed)
            y, _ = pad_packed_sequence(y, total_length=T)
        return y.numpy()

    return call


def _build_lengths_onnxruntime(case, threads):
    return _build_model_onnxruntime(case, threads, lengths=case.lengths)


# -- section "stream": one time step per call


class _StreamCase:
    """Batch 1, one step per call; T is the number of calls per timed block."""

    def __init__(self, T, B, D, H, seed=0):
        from . import LSTM

        self.shape = (T, B, D, H)
        x = np.random.default_rng(seed).standard_normal((T, 1, B, D)).astype(DTYPE)
        self.steps = list(x)  # T arrays (1, B, D): one time step each
        self.model = LSTM(D, H, dtype=DTYPE, seed=seed)

    def info(self):
        return {"steps_per_block": self.shape[0]}


class _StepBlock(_Measured):
    """A block of one-step calls, each timed on its own.

    `step(x_t)` runs one step with the carried state and returns its output; `reset()` goes
    back to the zero state; `context()` (optional) is entered around a whole block of steps.
    """

    def __init__(self, step, reset, steps, context=None, check_steps=_STREAM_CHECK_STEPS):
        # A block is short (T = 100 steps) and the blocks of the implementations alternate
        # many times: on a shared virtual machine the time of a step drifts between regimes
        # (1.5x) over tenths of a second, and long blocks would put one implementation in a
        # fast regime and the other in a slow one.
        self.step, self.reset, self.steps, self.context = step, reset, steps, context
        self.check_steps = min(check_steps, len(steps))
        self._elapsed = 0.0

    def _block(self):
        return self.context() if self.context is not None else contextlib.nullcontext()

    def output(self):
        """The outputs of the first steps from the zero state (the state then carries on)."""
        self.reset()
        with self._block():
            t0 = time.perf_counter()
            out = [np.array(self.step(x_t)) for x_t in self.steps[:self.check_steps]]
            self._elapsed = time.perf_counter() - t0
        return np.concatenate(out)

    def timed(self):
        step, clock = self.step, time.perf_counter
        times = []
        with self._block():
            for x_t in self.steps:
                t0 = clock()
                step(x_t)
                times.append(clock() - t0)
        return times

    def estimate(self):
        return self._elapsed * len(self.steps) / max(1, self.check_steps)


def _build_stream_cylstm(case, threads):
    stream = case.model.stream()
    return _StepBlock(stream, stream.reset, case.steps)


def _build_stream_torch(case, threads):
    import torch

    lstm = _torch_lstm(case.model, threads).eval()
    steps = [torch.from_numpy(x_t) for x_t in case.steps]
    state = [None]

    def step(x_t):
        out, state[0] = lstm(x_t, state[0])
        return out

    def reset():
        state[0] = None

    # One inference_mode block around a whole block of steps: the cheapest way to call torch
    # step by step (entering the context at every step would add to torch's time).
    return _StepBlock(step, reset, steps, context=torch.inference_mode)


# -- section "training": forward_train + backward


class _TrainCase:
    """One layer; a fixed gradient of the output, grad ~ N(0, 1)."""

    def __init__(self, T, B, D, H, seed=0):
        from . import LSTM

        self.shape = (T, B, D, H)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((T, B, D)).astype(DTYPE)
        self.grad = rng.standard_normal((T, B, H)).astype(DTYPE)
        self.model = LSTM(D, H, dtype=DTYPE, seed=seed)

    def info(self):
        return {}


def _build_train_cylstm(case, threads):
    model, x, grad = case.model, case.x, case.grad

    def call():
        output, _, backward = model.forward_train(x)
        grad_x, _, grads = backward(grad)
        return {"output": output, "grad_x": grad_x, **grads}

    return call


def _build_train_torch(case, threads):
    import torch

    lstm = _torch_lstm(case.model, threads).train()
    x = torch.from_numpy(case.x.copy()).requires_grad_(True)
    grad = torch.from_numpy(case.grad)
    parameters = dict(lstm.named_parameters())

    def call():
        lstm.zero_grad()
        x.grad = None
        output, _ = lstm(x)
        loss = (output * grad).sum()
        loss.backward()
        return {"output": output.detach().numpy(), "grad_x": x.grad.numpy(),
                **{name: p.grad.numpy() for name, p in parameters.items()}}

    return call


def _train_peak_mb(case):
    """Peak memory (MB, 10^6 bytes) NumPy allocates during one cylstm training step:
    forward_train + backward, measured with tracemalloc (NumPy reports its buffers to it)."""
    import tracemalloc

    call = _build_train_cylstm(case, 1)
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return round((peak - base) / 1e6, 3)


class _Section:
    """One kind of cell: its case, its implementations and how its table looks."""

    def __init__(self, name, title, case, builders, ratios, unit="ms", unchecked=(),
                 threads=None, lead=(), tail=(), extra=None, repeat_scale=1):
        self.name = name
        self.title = title
        self.case = case
        self.builders = builders  # {impl: builder}, in table order
        self.impls = tuple(builders)
        self.ratios = ratios  # cylstm's time over each of these
        self.unit = unit  # "ms" or "us" in the table
        self.unchecked = set(unchecked)
        self.threads = threads  # None: every thread count asked for; else only these
        self.lead = lead  # (header, cell -> text) columns before the times
        self.tail = tail  # ... and after the ratios
        self.extra = extra  # case -> {key: value} added to the cylstm row (measured untimed)
        self.repeat_scale = repeat_scale  # repeats (min, max, or fixed) times this


def _any_row(cell):
    return cell.get("cylstm") or next(iter(cell.values()))


def _percent(key):
    def column(cell):
        value = _any_row(cell).get(key)
        return "-" if value is None else f"{100 * value:.0f}%"

    return column


def _peak(cell):
    value = cell.get("cylstm", {}).get("peak_mb")
    return "-" if value is None else f"{value:.1f}"


SECTIONS = {
    "forward": _Section(
        "forward", "one layer, forward pass (median ms per call)", _Case,
        {"cylstm": _build_cylstm, "kernel": _build_kernel, "floor": _build_floor,
         "numpy": _build_numpy, "torch": _build_torch, "onnxruntime": _build_onnxruntime},
        RATIO_IMPLS, unchecked={"floor"}),
    "bidirectional": _Section(
        "bidirectional", "two layers, bidirectional, forward pass (median ms per call; ort runs "
        "model.to_onnx())", _BidirCase,
        {"cylstm": _build_cylstm, "torch": _build_torch,
         "onnxruntime": _build_model_onnxruntime},
        ("torch", "onnxruntime"),
        lead=(("layers", lambda cell: str(_any_row(cell).get("layers", "-"))),)),
    "lengths": _Section(
        "lengths", "variable lengths uniform in [T/4, T] (median ms per call; padded = cylstm on "
        "the padded batch without lengths; torch packs and unpacks)", _LengthsCase,
        {"cylstm": _build_lengths_cylstm, "padded": _build_cylstm,
         "torch": _build_lengths_torch, "onnxruntime": _build_lengths_onnxruntime},
        ("padded", "torch", "onnxruntime"), unchecked={"padded"},
        lead=(("valid", _percent("valid_fraction")),)),
    "training": _Section(
        "training", "training step, forward + backward (median ms per step; peak MB: "
        "tracemalloc peak of one cylstm step)", _TrainCase,
        {"cylstm": _build_train_cylstm, "torch": _build_train_torch},
        ("torch",), tail=(("peak MB", _peak),),
        extra=lambda case: {"peak_mb": _train_peak_mb(case)}),
    "stream": _Section(
        "stream", "streaming, batch 1, one step per call with the state carried (median "
        "microseconds per step over every call; T = steps per block)", _StreamCase,
        {"cylstm": _build_stream_cylstm, "torch": _build_stream_torch},
        ("torch",), unit="us", threads=(1,), repeat_scale=20),
}

# Implementations whose output is not an LSTM's and so is not compared (main table).
_UNCHECKED = SECTIONS["forward"].unchecked
_BUILDERS = SECTIONS["forward"].builders


# ----------------------------------------------------------------------------------------------
# Timing


class _ThreadLimit:
    """Limit BLAS/OpenMP pools and torch to `n` threads for the duration of a `with` block."""

    def __init__(self, n):
        self.n = n
        self.controlled = False
        self._limits = None
        self._torch_threads = None

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            self._limits = threadpool_limits(limits=self.n)
            self.controlled = True
        torch = sys.modules.get("torch")
        if torch is not None:
            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()
        if self._torch_threads is not None:
            sys.modules["torch"].set_num_threads(self._torch_threads)
        return False


def _cpu_snapshot():
    """(wall seconds, CPU seconds used by the whole machine, CPU seconds used by this process).

    The machine's busy time comes from /proc/stat (Linux); elsewhere it is None.
    """
    wall = time.perf_counter()
    own = time.process_time()  # all threads of this process
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal ... (clock ticks)
        ticks = [int(v) for v in fields[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        busy = None
    return wall, busy, own


def _other_cpu(before, after):
    """CPUs kept busy by other processes between two snapshots (e.g. 1.0 = one core), or None."""
    wall = after[0] - before[0]
    if before[1] is None or after[1] is None or wall <= 0:
        return None
    other = (after[1] - before[1]) - (after[2] - before[2])
    return round(max(other, 0.0) / wall, 2)


def _wait_idle(max_wait, window=0.5):
    """Wait up to max_wait seconds for a `window` in which other processes use (almost) no CPU."""
    deadline = time.perf_counter() + max_wait
    while time.perf_counter() < deadline:
        before = _cpu_snapshot()
        time.sleep(window)
        other = _other_cpu(before, _cpu_snapshot())
        if other is None or other <= _BUSY_WARNING / 2:
            return True
    return False


def _max_abs_diff(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    d = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
    return float(d) if np.isfinite(d) else float("inf")


def _settle(max_wait):
    """Sleep until this process's threads are idle; return False if that took over max_wait."""
    if max_wait <= 0:
        return True
    deadline = time.perf_counter() + max_wait
    while True:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(_SETTLE_SLICE)
        wall1 = time.perf_counter()
        if time.process_time() - cpu0 < 0.1 * (wall1 - wall0):
            return True
        if wall1 > deadline:
            return False


def _difference(out, reference):
    """max |out - reference| / max(1, max |reference|): the plain max abs difference for LSTM
    outputs (in [-1, 1]), a relative one for large gradients; the worst key for dicts."""
    if isinstance(reference, dict):
        if not isinstance(out, dict) or set(out) != set(reference):
            return float("inf")
        return max((_difference(out[key], reference[key]) for key in reference), default=0.0)
    diff = _max_abs_diff(out, reference)
    reference = np.asarray(reference)
    scale = float(np.abs(reference).max()) if reference.size else 1.0
    return diff / max(1.0, scale) if np.isfinite(scale) else float("inf")


def _copy(out):
    if isinstance(out, dict):
        return {key: np.array(value, copy=True) for key, value in out.items()}
    return np.array(out, copy=True)


def _run_cell(case, threads, impls, policy, repeats=None, settle=_SETTLE_MAX,
              section="forward"):
    """Time `impls` on one case at one thread count; return (rows, notes)."""
    spec = SECTIONS[section]
    warmups, min_rep, max_rep, budget = policy
    rows = {name: {"impl": name, "median_ms": None, "min_ms": None, "repeats": 0, "calls": 0,
                   "max_abs_diff": None, "agrees": None, "error": None} for name in impls}
    notes = []
    calls = {}
    outputs = {}
    round_time = 0.0
    for name in impls:
        try:
            built = spec.builders[name](case, threads)
            measured = built if isinstance(built, _Measured) else _Measured(built)
            for _ in range(max(1, warmups)):
                out = measured.output()
        except ImportError as exc:
            rows[name]["error"] = f"not available: {exc}"
            continue
        except Exception as exc:  # noqa: BLE001 - a failing implementation is reported
            rows[name]["error"] = f"{type(exc).__name__}: {exc}"
            notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
            continue
        calls[name] = measured
        outputs[name] = _copy(out)
        round_time += measured.estimate()

    reference = outputs.get("cylstm")
    for name in calls:
        if name in spec.unchecked or name == "cylstm" or reference is None:
            continue
        diff = _difference(outputs[name], reference)
        rows[name]["max_abs_diff"] = diff
        rows[name]["agrees"] = diff < TOLERANCE
        if not diff < TOLERANCE:
            notes.append(f"MISMATCH: {name} differs from cylstm by {diff:.3g} "
                         f"(tolerance {TOLERANCE:g}); its time is flagged with '!'")
    if reference is not None:
        rows["cylstm"]["agrees"] = True
    elif len(calls) > 0:
        notes.append("cylstm produced no output, so no output was checked")
    del outputs
    if spec.extra is not None and "cylstm" in calls:
        try:
            rows["cylstm"].update(spec.extra(case))
        except Exception as exc:  # noqa: BLE001 - informational only
            notes.append(f"could not measure {section} extras: {type(exc).__name__}: {exc}")

    scale = spec.repeat_scale
    if repeats is None:
        repeats = int(budget / round_time) if round_time > 0 else max_rep * scale
        repeats = min(max(repeats, min_rep * scale), max_rep * scale)
    else:
        repeats *= scale
    order = list(calls)
    times = {name: [] for name in order}
    rounds = {name: 0 for name in order}
    unsettled = 0
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(order) if order else 0
            for name in order[k:] + order[:k]:
                if name not in calls:
                    continue
                if not _settle(settle):
                    unsettled += 1
                try:
                    times[name].extend(calls[name].timed())
                except Exception as exc:  # noqa: BLE001
                    rows[name]["error"] = f"{type(exc).__name__}: {exc}"
                    notes.append(f"{name} failed while timed: {type(exc).__name__}: {exc}")
                    del calls[name]
                    continue
                rounds[name] += 1
    finally:
        if gc_was_enabled:
            gc.enable()

    if unsettled:
        notes.append(f"{unsettled} timed calls started while threads of this process were still "
                     f"busy after waiting {settle} s (see 'settle' in cylstm/benchmark.py)")
    for name, ts in times.items():
        if ts:
            rows[name]["median_ms"] = float(np.median(ts)) * 1e3
            rows[name]["min_ms"] = float(np.min(ts)) * 1e3
            rows[name]["repeats"] = rounds[name]
            rows[name]["calls"] = len(ts)
    return [rows[name] for name in impls], notes


def _parse_list(value, kind):
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return [kind(v) for v in value]


def _check_shape(name, shape):
    if (not isinstance(shape, (tuple, list)) or len(shape) != 4
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                   for v in shape)):
        raise ValueError(f"config {name!r}: the shape must be 4 positive ints (T, B, D, H), "
                         f"got {shape!r}")
    return tuple(int(v) for v in shape)


def _select_configs(configs):
    """[(name, section, (T, B, D, H))] from config names (a comma-separated string or a list of
    names from CONFIGS and EXTRA_CONFIGS; None: all), or from a mapping of new names to
    (T, B, D, H) (a main-table config) or (section, (T, B, D, H))."""
    if isinstance(configs, dict):
        selected = []
        for name, value in configs.items():
            if (isinstance(value, (tuple, list)) and len(value) == 2
                    and isinstance(value[0], str)):
                section, shape = value
                if section not in SECTIONS:
                    raise ValueError(f"config {name!r}: unknown section {section!r}; choose "
                                     f"from {list(SECTIONS)}")
            else:
                section, shape = "forward", value
            selected.append((str(name), section, _check_shape(name, shape)))
        return selected
    names = list(CONFIGS) + list(EXTRA_CONFIGS) if configs is None else _parse_list(configs, str)
    unknown = [c for c in names if c not in CONFIGS and c not in EXTRA_CONFIGS]
    if unknown:
        raise ValueError(f"unknown configs {unknown}; choose from "
                         f"{list(CONFIGS) + list(EXTRA_CONFIGS)}")
    return [(c, "forward", CONFIGS[c]) if c in CONFIGS else (c, *EXTRA_CONFIGS[c])
            for c in dict.fromkeys(names)]


def run(configs=None, threads=(1, 2), quick=False, progress=False, impls=None, repeats=None,
        settle=_SETTLE_MAX, wait_idle=0, split_threads=False):
    """Run the benchmark; return ``{"machine", "settings", "rows", "notes", "goals",
    "key_ratios"}``.

    Parameters
    ----------
    configs : config names (keys of ``CONFIGS`` and ``EXTRA_CONFIGS``, a list or a
        comma-separated string) or None for all; or a dict of new names to ``(T, B, D, H)``
        (timed like the main table) or ``(section, (T, B, D, H))`` with a section of
        ``SECTIONS`` ("forward", "bidirectional", "lengths", "training", "stream")
    threads : iterable of thread counts (the stream section runs at 1 thread only)
    quick : few repeats (a smoke run, about a minute for everything) instead of a full run
    progress : show a progress bar (tqdm when installed, else one line per cell on stderr)
    impls : iterable of implementation names (``IMPLS`` and ``EXTRA_IMPLS``) or None for all
        that are installed; each section runs those of its own that are asked for
    repeats : a fixed number of timed repeats per cell instead of the time-budget policy (times
        20 for ``stream``, whose repeats are short blocks)
    settle : before each timed call, wait up to this many seconds for the worker threads left
        spinning by the previous call to go idle (0: no wait)
    wait_idle : before each cell, wait up to this many seconds for other processes on the
        machine to go quiet (for shared machines; 0: no wait)
    split_threads : at n > 1 threads, run cylstm with ``LSTM(num_threads=n)`` (the batch, or
        the two directions, split over threads with single-threaded BLAS) when the installed
        cylstm has it; False: one time loop over n-thread BLAS. ``kernel`` and ``floor`` always
        use n-thread BLAS.

    Each row is ``{config, section, T, B, D, H, threads, threads_set, other_cpu, cell_seconds,
    impl, median_ms, min_ms, repeats, calls, max_abs_diff, agrees, error}`` plus the section's
    own keys (``layers``; ``mean_length``, ``valid_fraction``; ``steps_per_block``; ``peak_mb``
    on training's cylstm rows). ``median_ms`` is per call (per step for ``stream``: the median
    over every timed step); ``max_abs_diff`` is against cylstm's output (None for cylstm
    itself, for ``floor`` and ``padded``, and when not run); ``median_ms`` is None when the
    implementation is not available or failed (``error`` says why).
    """
    selected = _select_configs(configs)
    threads = _parse_list(threads, int)
    if not threads or any(n < 1 for n in threads):
        raise ValueError(f"thread counts must be positive integers, got {threads}")
    known = IMPLS + EXTRA_IMPLS
    impls = list(known) if impls is None else _parse_list(impls, str)
    unknown = [i for i in impls if i not in known]
    if unknown:
        raise ValueError(f"unknown implementations {unknown}; choose from {list(known)}")
    # Table order; cylstm always runs, as the reference for the output check and the ratios.
    impls = [name for name in known if name in impls or name == "cylstm"]
    policy = _POLICY["quick" if quick else "full"]
    # Load the optional frameworks up front, so that threadpoolctl sees (and limits) the thread
    # pools they bring and the machine description lists them.
    for name, module in (("torch", "torch"), ("onnxruntime", "onnxruntime")):
        if name in impls:
            try:
                __import__(module)
            except Exception:  # noqa: BLE001 - reported by the builder as "not available"
                pass

    rows, notes = [], []
    plan = []
    for config, section, shape in selected:
        spec = SECTIONS[section]
        counts = [n for n in threads if spec.threads is None or n in spec.threads]
        if not counts:
            notes.append(f"config {config} runs at {' or '.join(map(str, spec.threads))} "
                         f"thread(s) only: skipped")
            continue
        plan.append((config, section, shape, counts))
    bar = None
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=sum(len(counts) for *_, counts in plan), desc="cylstm benchmark",
                       unit="cell", file=sys.stderr)

    load_before = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    threads_uncontrolled = set()
    started = time.perf_counter()
    for config, section, shape, counts in plan:
        spec = SECTIONS[section]
        T, B, D, H = shape
        case = spec.case(T, B, D, H)
        case.split_threads = split_threads
        info = case.info()
        cell_impls = [name for name in spec.impls if name in impls]
        for n in counts:
            if bar is not None:
                bar.set_postfix_str(f"config {config}, {n} thread{'s' if n > 1 else ''}")
            elif progress:
                print(f"cylstm benchmark: config {config} (T={T} B={B} D={D} H={H}), "
                      f"{n} thread(s)", file=sys.stderr, flush=True)
            if wait_idle > 0:
                _wait_idle(wait_idle)
            before = _cpu_snapshot()
            cell_start = time.perf_counter()
            with _ThreadLimit(n) as limit:
                cell_rows, cell_notes = _run_cell(case, n, cell_impls, policy, repeats, settle,
                                                  section=section)
            cell_seconds = round(time.perf_counter() - cell_start, 2)
            other_cpu = _other_cpu(before, _cpu_snapshot())
            if other_cpu is not None and other_cpu > _BUSY_WARNING:
                cell_notes.append(f"other processes kept {other_cpu:.2f} CPUs busy during this "
                                  "cell: its times are unreliable")
            if not limit.controlled:
                threads_uncontrolled.add(n)
            for row in cell_rows:
                rows.append({"config": config, "section": section, "T": T, "B": B, "D": D,
                             "H": H, "threads": n, "threads_set": limit.controlled,
                             "other_cpu": other_cpu, "cell_seconds": cell_seconds, **info,
                             **row})
            notes.extend(f"config {config}, {n} thread(s): {note}" for note in cell_notes)
            if bar is not None:
                bar.update(1)
        del case
    if bar is not None:
        bar.close()
    if threads_uncontrolled:
        notes.insert(0, "threadpoolctl is not installed: the BLAS thread count could not be set "
                        "(rows have threads_set = false); only torch and onnxruntime honour the "
                        "threads column")
    unavailable = sorted({r["impl"] for r in rows
                          if r["error"] and r["error"].startswith("not available")})
    for name in unavailable:
        reason = next(r["error"] for r in rows if r["impl"] == name and r["error"])
        notes.append(f"{name} skipped: {reason}")

    from . import LSTM

    splits = split_threads and hasattr(LSTM(1, 1), "num_threads")
    if any(n > 1 for *_, counts in plan for n in counts):
        notes.append("cylstm at n > 1 threads: " + (
            "LSTM(num_threads=n), the batch (or the two directions) split over n threads with "
            "single-threaded BLAS; kernel and floor: one time loop over n-thread BLAS; training: "
            "n-thread BLAS" if splits else "one time loop over n-thread BLAS"
            + (" (--split)" if split_threads else "")))
    machine = machine_info()
    machine["load_average_before"] = load_before
    result = {
        "machine": machine,
        "settings": {
            "configs": {c: list(shape) for c, _, shape, _ in plan},
            "sections": {c: section for c, section, _, _ in plan},
            "threads": threads,
            "impls": impls,
            "mode": "quick" if quick else "full",
            "warmups": policy[0],
            "repeats": repeats if repeats is not None else f"{policy[1]}-{policy[2]}",
            "dtype": np.dtype(DTYPE).name,
            "tolerance": TOLERANCE,
            "settle_max_s": settle,
            "wait_idle_s": wait_idle,
            "cylstm_split_threads": splits,
            "wall_time_s": round(time.perf_counter() - started, 1),
        },
        "rows": rows,
        "notes": notes,
    }
    result["goals"] = goals(result)
    result["key_ratios"] = key_ratios(result)
    return result


# ----------------------------------------------------------------------------------------------
# Goals and the regression check


def _cell_map(result):
    """{(config, threads): {impl: row}}."""
    cells = {}
    for row in result["rows"]:
        cells.setdefault((row["config"], row["threads"]), {})[row["impl"]] = row
    return cells


def _median(cells, config, threads, impl):
    row = cells.get((config, threads), {}).get(impl)
    if row is None or row.get("median_ms") is None or row["median_ms"] <= 0:
        return None
    return row["median_ms"]


def _measure(cells, measure, config):
    """The value of one goal measure (see GOALS) for one config, or None if not measured."""
    mine = _median(cells, config, 1, "cylstm")
    if mine is None:
        return None
    if measure == "threads 1/2":
        other = _median(cells, config, 2, "cylstm")
        return mine / other if other else None
    if measure == "cylstm/best":
        others = [t for t in (_median(cells, config, 1, "torch"),
                              _median(cells, config, 1, "onnxruntime")) if t]
        other = min(others) if others else None
    elif measure == "cylstm/floor":
        other = _median(cells, config, 1, "floor")
    elif measure == "cylstm/torch":
        other = _median(cells, config, 1, "torch")
    else:
        raise ValueError(f"unknown measure {measure!r}")
    return mine / other if other else None


def goals(result):
    """The speed goals (``GOALS``) that this result measures, each a dict ``{config, measure,
    text, label, threads, ratio, op, target, met}``; ``met`` compares the ratio rounded to two
    decimals, as printed."""
    cells = _cell_map(result)
    out = []
    for measure, configs, op, target, label in GOALS:
        for config in configs:
            ratio = _measure(cells, measure, config)
            if ratio is None:
                continue
            shown = round(ratio, 2)
            out.append({"config": config, "measure": measure, "text": _MEASURE_TEXT[measure],
                        "label": label, "threads": "1/2" if measure == "threads 1/2" else 1,
                        "ratio": round(ratio, 4), "op": op, "target": target,
                        "met": shown <= target if op == "<=" else shown >= target})
    order = {config: k for k, config in enumerate(dict.fromkeys(r["config"]
                                                               for r in result["rows"]))}
    out.sort(key=lambda g: order.get(g["config"], len(order)))  # stable: GOALS order within
    return out


def key_ratios(result):
    """{"<config> <measure>": ratio} for the ratios of ``BASELINE_RATIOS`` this result has."""
    cells = _cell_map(result)
    ratios = {}
    for measure, configs in BASELINE_RATIOS:
        for config in configs:
            ratio = _measure(cells, measure, config)
            if ratio is not None:
                ratios[f"{config} {measure}"] = round(ratio, 4)
    return ratios


def make_baseline(result, factor=BASELINE_FACTOR):
    """A baseline for ``check_baseline`` from a result: its key ratios and where they come from."""
    machine = result.get("machine", {})
    return {
        "about": "cylstm benchmark baseline: ratios of median times, each measured interleaved "
                 "on one machine; `python -m cylstm bench --check-baseline FILE` fails when a "
                 "ratio exceeds factor x its value here. Rewrite with --write-baseline FILE.",
        "date": machine.get("date"),
        "machine": {key: machine.get(key) for key in ("cpu", "cpus_usable", "cylstm_simd_path")},
        "versions": machine.get("versions"),
        "mode": result.get("settings", {}).get("mode"),
        "factor": factor,
        "ratios": key_ratios(result),
    }


def check_baseline(result, baseline, factor=None):
    """Compare a result's key ratios with a baseline (a dict from ``make_baseline``, or the path
    of its JSON file). Return ``(ok, lines)``: ok is False when some ratio exceeds ``factor``
    (default: the baseline's, else ``BASELINE_FACTOR``) times its baseline value. Ratios the
    result does not have are skipped; absolute times are never compared."""
    if isinstance(baseline, (str, os.PathLike)):
        with open(baseline) as f:
            baseline = json.load(f)
    if factor is None:
        factor = float(baseline.get("factor", BASELINE_FACTOR))
    now = key_ratios(result)
    ok, lines = True, []
    for key, then in baseline.get("ratios", {}).items():
        value = now.get(key)
        if value is None:
            lines.append(f"{key:22s}    -   (baseline {then:.2f}): not measured, skipped")
            continue
        limit = then * factor
        if value > limit:
            ok = False
            verdict = f"REGRESSION: over {factor:g} x baseline"
        elif value < then / factor:
            verdict = "ok, much better than the baseline (update it?)"
        else:
            verdict = "ok"
        lines.append(f"{key:22s} {value:5.2f} (baseline {then:.2f}, limit {limit:.2f}) {verdict}")
    if not baseline.get("ratios"):
        lines.append("the baseline has no ratios")
    return ok, lines


# ----------------------------------------------------------------------------------------------
# Reports


def _section_of(row):
    return row.get("section", "forward")


def _sections_present(result):
    """Section names in run order, the main table ("forward") first."""
    present = list(dict.fromkeys(_section_of(row) for row in result["rows"]))
    return sorted(present, key=lambda s: (s != "forward", present.index(s)))


def _cells(result, section="forward"):
    """[(config, threads, {impl: row})] of one section, in run order."""
    cells = {}
    for row in result["rows"]:
        if _section_of(row) == section:
            cells.setdefault((row["config"], row["threads"]), {})[row["impl"]] = row
    return [(c, n, impls) for (c, n), impls in cells.items()]


def _impls_present(result, section="forward"):
    present = {row["impl"] for row in result["rows"]
               if _section_of(row) == section and row["median_ms"] is not None}
    spec = SECTIONS.get(section)
    order = list(spec.impls if spec is not None else IMPLS + EXTRA_IMPLS)
    return [name for name in order if name in present]


def _ms(row, unit="ms"):
    if row is None or row["median_ms"] is None:
        return "-"
    flag = "!" if row.get("agrees") is False else ""
    value = row["median_ms"] * (1e3 if unit == "us" else 1.0)
    text = f"{value:.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return text + flag


def _ratio(cell, other):
    mine, theirs = cell.get("cylstm"), cell.get(other)
    if (mine is None or theirs is None or mine["median_ms"] is None
            or theirs["median_ms"] is None or theirs["median_ms"] <= 0):
        return "-"
    return f"{mine['median_ms'] / theirs['median_ms']:.2f}"


def _table_data(result, section="forward"):
    """(header, lines, bars): bars are the column indices a '|' goes before."""
    spec = SECTIONS.get(section, SECTIONS["forward"])
    impls = _impls_present(result, section)
    lead = [name for name, _ in spec.lead]
    tail = [name for name, _ in spec.tail]
    ratios = [i for i in spec.ratios if i in impls or section == "forward"]
    header = (["config", "T", "B", "D", "H"] + lead + ["thr"]
              + [_SHORT.get(i, i) for i in impls]
              + [f"cy/{_SHORT.get(i, i)}" for i in ratios] + tail)
    lines = []
    for config, n, cell in _cells(result, section):
        row = _any_row(cell)
        lines.append([config, str(row["T"]), str(row["B"]), str(row["D"]), str(row["H"])]
                     + [column(cell) for _, column in spec.lead] + [str(n)]
                     + [_ms(cell.get(i), spec.unit) for i in impls]
                     + [_ratio(cell, i) for i in ratios]
                     + [column(cell) for _, column in spec.tail])
    first = 6 + len(lead)
    bars = [first, first + len(impls)] + ([first + len(impls) + len(ratios)] if tail else [])
    return header, lines, bars


def _text_table(header, lines, bars):
    widths = [max(len(row[k]) for row in [header] + lines) for k in range(len(header))]

    def fmt(row):
        parts = []
        for k, cell in enumerate(row):
            if k in bars:
                parts.append("|")
            parts.append(cell.ljust(widths[k]) if k == 0 else cell.rjust(widths[k]))
        return " ".join(parts)

    text = [fmt(header)]
    text.append("-" * len(text[0]))
    text.extend(fmt(row) for row in lines)
    return text


def _goal_text(goal):
    """'1.12 (goal <= 1.10) MISS'."""
    return (f"{goal['ratio']:.2f} (goal {goal['op']} {goal['target']:.2f})"
            + ("" if goal["met"] else " MISS"))


def _goal_lines(result):
    listed = result.get("goals")
    listed = goals(result) if listed is None else listed
    if not listed:
        return []
    width = max(len(f"{g['text']}, {g['label']}") for g in listed)
    config_width = max(len(g["config"]) for g in listed)
    lines = ["goals (one thread, except the 2-thread speed-up; ratios as in the tables):"]
    for g in listed:
        what = f"{g['text']}, {g['label']}"
        lines.append(f"  {g['config']:<{config_width}}  {what:<{width}}  {_goal_text(g)}")
    missed = [g for g in listed if not g["met"]]
    lines.append(f"goals met: {len(listed) - len(missed)} of {len(listed)}"
                 + ("; missed: " + ", ".join(f"{g['config']} {g['text']} ({g['label']}) "
                                              f"{g['ratio']:.2f}" for g in missed)
                    if missed else ""))
    return lines


def format_table(result):
    """Plain text: the main table (one line per (config, threads), median ms per
    implementation, then cylstm's time over floor, torch, onnxruntime and numpy: below 1 means
    cylstm is faster), a table per section, the goals with MISS marks, and the notes."""
    settings = result.get("settings", {})
    text = []
    for section in _sections_present(result):
        header, lines, bars = _table_data(result, section)
        if section == "forward":
            text.extend(_text_table(header, lines, bars))
            text.append("")
            text.append(f"median milliseconds per forward pass ({settings.get('mode', '?')} run, "
                        f"{settings.get('dtype', 'float32')}); cy/X = cylstm time / X time, "
                        "below 1 means cylstm is faster")
        else:
            if text:
                text.append("")
            text.append(SECTIONS[section].title if section in SECTIONS else section)
            text.extend(_text_table(header, lines, bars))
    goal_lines = _goal_lines(result)
    if goal_lines:
        text.append("")
        text.extend(goal_lines)
    machine = result.get("machine", {})
    if machine:
        versions = machine.get("versions", {})
        text.append("")
        text.append(f"{machine.get('cpu', '?')}, {machine.get('cpus_usable', '?')} CPUs; "
                    + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    for note in result.get("notes", []):
        text.append(f"note: {note}")
    return "\n".join(text)


def _markdown_table(header, lines):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(":--" if k == 0 else "--:" for k in range(len(header))) + "|"]
    out.extend("| " + " | ".join(row) + " |" for row in lines)
    return out


def format_markdown(result):
    """The tables as Markdown, with the machine description above them, the goals and the
    notes below."""
    machine = result.get("machine", {})
    settings = result.get("settings", {})
    out = ["# cylstm benchmark", ""]
    if machine:
        versions = machine.get("versions", {})
        out += [
            f"- date: {machine.get('date', '?')}",
            f"- machine: {machine.get('cpu', '?')} ({machine.get('cpus_usable', '?')} usable CPUs"
            f" of {machine.get('cpu_count', '?')}; flags {' '.join(machine.get('cpu_flags', []))})",
            f"- platform: {machine.get('platform', '?')}, Python {machine.get('python', '?')}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        ]
        if machine.get("cylstm_simd_path"):
            out.append(f"- cylstm gate math: {machine['cylstm_simd_path']}")
        blas = machine.get("blas")
        if blas:
            out.append("- BLAS/OpenMP: " + "; ".join(
                f"{lib.get('internal_api', '?')} {lib.get('version') or ''} "
                f"({lib.get('library', '')})".replace("  ", " ") for lib in blas))
        if machine.get("load_average"):
            out.append(f"- load average (1, 5, 15 min) before: "
                       f"{machine.get('load_average_before')}, after: {machine['load_average']}")
    out += [f"- run: {settings.get('mode', '?')}, {settings.get('dtype', 'float32')}, "
            f"{settings.get('repeats', '?')} repeats per cell, "
            f"{settings.get('wall_time_s', '?')} s", ""]
    for section in _sections_present(result):
        header, lines, _ = _table_data(result, section)
        if section == "forward":
            out.append("Median milliseconds per forward pass; `cy/X` is cylstm's time over X's "
                       "(below 1: cylstm is faster). `!` marks an output that disagrees with "
                       "cylstm's.")
        else:
            title = SECTIONS[section].title if section in SECTIONS else section
            out.append(f"## {title[0].upper() + title[1:]}")
        out.append("")
        out.extend(_markdown_table(header, lines))
        out.append("")
    listed = result.get("goals")
    listed = goals(result) if listed is None else listed
    if listed:
        out.append("## Goals (one thread, except the 2-thread speed-up)")
        out.append("")
        out.extend(_markdown_table(
            ["config", "measure", "ratio", "goal", ""],
            [[g["config"], f"{g['text']}, {g['label']}", f"{g['ratio']:.2f}",
              f"{g['op']} {g['target']:.2f}".replace("<=", "&le;").replace(">=", "&ge;"),
              "ok" if g["met"] else "**MISS**"] for g in listed]))
        out.append("")
    notes = result.get("notes", [])
    if notes:
        out.extend(f"- {note}" for note in notes)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def plot_png(result, path):
    """Draw the main table (median ms per implementation, log scale, one group of bars per
    (config, threads)) and the goals (each ratio against its goal) into a PNG file.

    Returns True, or False when matplotlib is not installed (nothing is written)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    cells = _cells(result, "forward")
    impls = _impls_present(result, "forward")
    listed = result.get("goals")
    listed = goals(result) if listed is None else listed
    panels = int(bool(cells and impls)) + int(bool(listed))
    figure = Figure(figsize=(11, 4.2 * max(1, panels)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(max(1, panels), 1, squeeze=False)[:, 0])
    if cells and impls:
        ax = axes.pop(0)
        width = 0.8 / len(impls)
        for k, name in enumerate(impls):
            xs, ys = [], []
            for position, (_, _, cell) in enumerate(cells):
                row = cell.get(name)
                if row is not None and row["median_ms"] is not None:
                    xs.append(position + (k - (len(impls) - 1) / 2) * width)
                    ys.append(row["median_ms"])
            ax.bar(xs, ys, width, label=_SHORT.get(name, name))
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([f"{c}\n{n} thr" for c, n, _ in cells])
        ax.set_yscale("log")
        ax.set_ylabel("median ms per forward pass")
        mode = result.get("settings", {}).get("mode", "?")
        ax.set_title(f"cylstm benchmark, one LSTM layer ({mode} run; "
                     f"{result.get('machine', {}).get('cpu', '?')})")
        ax.legend(ncol=len(impls), fontsize="small")
        ax.grid(axis="y", which="both", alpha=0.3)
    if listed:
        ax = axes.pop(0)
        labels = [f"{g['config']}: {g['text']} ({g['label']}) {g['op']} {g['target']:.2f}"
                  for g in listed]
        ys = range(len(listed))
        ax.barh(ys, [g["ratio"] for g in listed],
                color=["tab:green" if g["met"] else "tab:red" for g in listed])
        ax.scatter([g["target"] for g in listed], ys, marker="|", s=300, color="black",
                   label="goal", zorder=3)
        ax.set_yticks(list(ys))
        ax.set_yticklabels(labels, fontsize="small")
        ax.invert_yaxis()
        ax.set_xlabel("ratio (green: goal met, red: missed)")
        ax.legend(fontsize="small")
        ax.grid(axis="x", alpha=0.3)
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    return True


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv=None):
    """Command-line entry: run the benchmark, print the tables; return the exit status: 1 when
    an output disagrees with cylstm's, cylstm fails, or a ratio regressed grossly against
    --check-baseline; else 0 (missed speed goals do not fail)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--dask" in argv:  # cylstm.dask's benchmark, a module of its own
        from . import bench_dask

        return bench_dask.main([arg for arg in argv if arg != "--dask"])
    names = list(CONFIGS) + list(EXTRA_CONFIGS)
    parser = argparse.ArgumentParser(
        prog="python -m cylstm.benchmark",
        description="Time cylstm's LSTM against its BLAS floor, NumPy, PyTorch and ONNX "
                    "Runtime. Configs (T, B, D, H): "
                    + ", ".join(f"{k}={v}" for k, v in CONFIGS.items()) + "; sections: "
                    + ", ".join(f"{k}={v[1]} ({v[0]})" for k, v in EXTRA_CONFIGS.items())
                    + ".")
    parser.add_argument("--quick", action="store_true",
                        help="a few repeats per cell (about a minute for everything)")
    parser.add_argument("--configs", default=",".join(names),
                        help="comma-separated config names (default: all): " + ",".join(names))
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated thread counts (default: 1,2; stream: 1 only)")
    parser.add_argument("--impls", default=None,
                        help="comma-separated implementations (default: all installed): "
                             + ",".join(IMPLS + EXTRA_IMPLS))
    parser.add_argument("--repeats", type=int, default=None,
                        help="fixed number of timed repeats per cell (default: time budget)")
    parser.add_argument("--settle", type=float, default=_SETTLE_MAX, metavar="SECONDS",
                        help="before each timed call, wait up to this long for idle worker "
                             f"threads to stop spinning (default: {_SETTLE_MAX}; 0: no wait)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each cell, wait up to this long for other processes to "
                             "leave the CPUs idle (for shared machines; default: 0)")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write a Markdown report")
    parser.add_argument("--png", metavar="PATH",
                        help="also draw the main table and the goals as a PNG (needs matplotlib)")
    parser.add_argument("--check-baseline", metavar="PATH",
                        help="compare the key ratios with this baseline JSON; exit 1 when one "
                             "exceeds the baseline's factor (1.5) times its baseline value")
    parser.add_argument("--baseline-factor", type=float, default=None, metavar="F",
                        help="override the baseline file's factor")
    parser.add_argument("--write-baseline", metavar="PATH",
                        help="write this run's key ratios as a new baseline JSON")
    parser.add_argument("--from-json", metavar="PATH",
                        help="do not run: read a result written by --json and report on it "
                             "(tables, --markdown, --png, --check-baseline)")
    parser.add_argument("--split", action="store_true",
                        help="at n > 1 threads run cylstm with LSTM(num_threads=n) (batch or "
                             "directions split over threads), not as one time loop over "
                             "n-thread BLAS (the default, and the faster on 2 cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
    else:
        try:
            result = run(configs=args.configs, threads=args.threads, quick=args.quick,
                         progress=not args.no_progress, impls=args.impls, repeats=args.repeats,
                         settle=args.settle, wait_idle=args.wait_idle,
                         split_threads=args.split)
        except ValueError as exc:
            parser.error(str(exc))
    print(format_table(result))
    if args.json and not args.from_json:
        with atomic_write(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.markdown:
        with atomic_write(args.markdown, "w") as f:
            f.write(format_markdown(result))
    if args.png and not plot_png(result, args.png):
        print(f"note: matplotlib is not installed: no chart written to {args.png}")
    if args.write_baseline:
        baseline = make_baseline(result, factor=args.baseline_factor or BASELINE_FACTOR)
        with atomic_write(args.write_baseline, "w") as f:
            json.dump(baseline, f, indent=2)
            f.write("\n")
        print(f"baseline with {len(baseline['ratios'])} ratios written to {args.write_baseline}")
    failed = [row for row in result["rows"]
              if row["agrees"] is False or (row["impl"] == "cylstm" and row["error"])]
    status = 1 if failed else 0
    if args.check_baseline:
        ok, lines = check_baseline(result, args.check_baseline, factor=args.baseline_factor)
        print("")
        print(f"regression check against {args.check_baseline} (ratios only):")
        print("\n".join(f"  {line}" for line in lines))
        print("regression check: " + ("passed" if ok else "FAILED"))
        if not ok:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
