"""Time cylstm's LSTM against its BLAS floor, NumPy, PyTorch and ONNX Runtime.

Run ``python -m cylstm.benchmark --quick`` (or ``python benchmarks/run.py --quick`` from a
checkout) for a table; ``--help`` lists the options. ``run()`` returns the raw results as a dict,
``format_table()`` and ``format_markdown()`` turn them into text.

Implementations, each one LSTM layer of float32 over the same input and the same weights:

``cylstm``
    The public model call, ``cylstm.LSTM(D, H)(x)``: validation, allocation and the kernel.
``kernel``
    ``cylstm._lstm.forward_layer`` with preallocated buffers: the compiled kernel alone.
``floor``
    The same kernel call with ``gate_math=False``: exactly the same BLAS calls (one input
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

Every timed call is one whole forward pass over the sequence, from zero initial state. Within one
(config, threads) cell the implementations are timed round-robin, one call each per repeat, with
the starting implementation rotated, so that noise from other work on the machine hits them
alike; before each timed call the process waits (briefly) until the worker threads the previous
call left spinning have gone idle, so that no library pays for another's threads. The output of
each implementation is compared with cylstm's on the warm-up call of every cell; one that differs
by more than ``TOLERANCE`` is timed but flagged with ``!`` in the table and listed in the notes,
and ``main()`` exits with status 1.

Thread counts: BLAS and OpenMP pools are limited with threadpoolctl (``threadpool_limits``) when
it is installed; torch gets ``torch.set_num_threads``; ONNX Runtime gets ``intra_op_num_threads``
(``inter_op_num_threads`` = 1). Without threadpoolctl the BLAS thread count cannot be set and the
rows say so (``threads_set: false``).

Only numpy and cylstm are needed to import this module; torch, onnx, onnxruntime, threadpoolctl
and tqdm are imported when used.
"""

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time

import numpy as np

from ._version import __version__
from .numpy_lstm import lstm_numpy

__all__ = ["CONFIGS", "IMPLS", "TOLERANCE", "run", "format_table", "format_markdown",
           "machine_info", "make_onnx_lstm", "main"]

#: name -> (T, B, D, H): sequence length, batch, input size, hidden size. All float32.
CONFIGS = {
    "a": (1000, 1, 32, 64),
    "b": (500, 1, 128, 256),
    "c": (100, 32, 128, 256),
    "d": (100, 64, 512, 512),
    "e": (50, 256, 256, 256),
}

#: Implementations in table order. cylstm is the reference for the output check.
IMPLS = ("cylstm", "kernel", "floor", "numpy", "torch", "onnxruntime")

#: Largest max-abs difference from cylstm's output that counts as agreement.
TOLERANCE = 1e-4

# Ratios shown in the table: cylstm's time over each of these.
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
# The implementations. Each builder returns a function that runs one forward pass and returns the
# output as a (T, B, H) ndarray, or raises ImportError when its framework is not installed.


def _aligned_copy(a, alignment=64):
    """A C-contiguous copy of `a` whose data starts on an `alignment`-byte boundary."""
    a = np.asarray(a)
    buf = np.empty(a.nbytes + alignment, dtype=np.uint8)
    offset = (-buf.ctypes.data) % alignment
    out = buf[offset:offset + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


class _Case:
    """The input, weights and cylstm model of one config."""

    def __init__(self, T, B, D, H, seed=0):
        from . import LSTM

        self.shape = (T, B, D, H)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((T, B, D)).astype(DTYPE)
        self.model = LSTM(D, H, dtype=DTYPE, seed=seed)
        sd = self.model.state_dict()
        self.w_ih = _aligned_copy(sd["weight_ih_l0"])
        self.w_hh = _aligned_copy(sd["weight_hh_l0"])
        self.b_ih = sd["bias_ih_l0"]
        self.b_hh = sd["bias_hh_l0"]
        self.bias = _aligned_copy(self.b_ih + self.b_hh)


def _build_cylstm(case, threads):
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
        forward_layer(x, w_ih, w_hh, bias, h, c, out, gate_math=gate_math)
        return out

    return call


def _build_floor(case, threads):
    return _build_kernel(case, threads, gate_math=False)


def _build_numpy(case, threads):
    x, w_ih, w_hh, bias = case.x, case.w_ih, case.w_hh, case.bias

    def call():
        return lstm_numpy(x, w_ih, w_hh, bias)[0]

    return call


def _build_torch(case, threads):
    import torch

    T, B, D, H = case.shape
    torch.set_num_threads(threads)
    lstm = torch.nn.LSTM(D, H)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", case.w_ih), ("weight_hh_l0", case.w_hh),
                            ("bias_ih_l0", case.b_ih), ("bias_hh_l0", case.b_hh)):
            getattr(lstm, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    lstm.eval()
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


def _build_onnxruntime(case, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(
        make_onnx_lstm(case.w_ih, case.w_hh, case.b_ih, case.b_hh), options,
        providers=["CPUExecutionProvider"])
    T, B, D, H = case.shape
    feed = {"X": case.x}

    def call():
        return session.run(["Y"], feed)[0].reshape(T, B, H)

    return call


_BUILDERS = {
    "cylstm": _build_cylstm,
    "kernel": _build_kernel,
    "floor": _build_floor,
    "numpy": _build_numpy,
    "torch": _build_torch,
    "onnxruntime": _build_onnxruntime,
}

# Implementations whose output is not an LSTM's and so is not compared.
_UNCHECKED = {"floor"}


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


def _run_cell(case, threads, impls, policy, repeats=None, settle=_SETTLE_MAX):
    """Time `impls` on one case at one thread count; return (rows, notes)."""
    warmups, min_rep, max_rep, budget = policy
    rows = {name: {"impl": name, "median_ms": None, "min_ms": None, "repeats": 0,
                   "max_abs_diff": None, "agrees": None, "error": None} for name in impls}
    notes = []
    calls = {}
    outputs = {}
    round_time = 0.0
    for name in impls:
        try:
            fn = _BUILDERS[name](case, threads)
            for _ in range(max(1, warmups)):
                t0 = time.perf_counter()
                out = fn()
                elapsed = time.perf_counter() - t0
        except ImportError as exc:
            rows[name]["error"] = f"not available: {exc}"
            continue
        except Exception as exc:  # noqa: BLE001 - a failing implementation is reported
            rows[name]["error"] = f"{type(exc).__name__}: {exc}"
            notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
            continue
        calls[name] = fn
        outputs[name] = np.array(out, copy=True)
        round_time += elapsed

    reference = outputs.get("cylstm")
    for name in calls:
        if name in _UNCHECKED or name == "cylstm" or reference is None:
            continue
        diff = _max_abs_diff(outputs[name], reference)
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

    if repeats is None:
        repeats = int(budget / round_time) if round_time > 0 else max_rep
        repeats = min(max(repeats, min_rep), max_rep)
    order = list(calls)
    times = {name: [] for name in order}
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
                t0 = time.perf_counter()
                try:
                    calls[name]()
                except Exception as exc:  # noqa: BLE001
                    rows[name]["error"] = f"{type(exc).__name__}: {exc}"
                    notes.append(f"{name} failed while timed: {type(exc).__name__}: {exc}")
                    del calls[name]
                    continue
                times[name].append(time.perf_counter() - t0)
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
            rows[name]["repeats"] = len(ts)
    return [rows[name] for name in impls], notes


def _parse_list(value, kind):
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return [kind(v) for v in value]


def run(configs=None, threads=(1, 2), quick=False, progress=False, impls=None, repeats=None,
        settle=_SETTLE_MAX, wait_idle=0):
    """Run the benchmark; return ``{"machine", "settings", "rows", "notes"}``.

    Parameters
    ----------
    configs : iterable of config names (keys of ``CONFIGS``) or None for all
    threads : iterable of thread counts
    quick : few repeats (a smoke run, about a minute for everything) instead of a full run
    progress : show a progress bar (tqdm when installed, else one line per cell on stderr)
    impls : iterable of implementation names (``IMPLS``) or None for all that are installed
    repeats : a fixed number of timed repeats per cell instead of the time-budget policy
    settle : before each timed call, wait up to this many seconds for the worker threads left
        spinning by the previous call to go idle (0: no wait)
    wait_idle : before each cell, wait up to this many seconds for other processes on the
        machine to go quiet (for shared machines; 0: no wait)

    Each row is ``{config, T, B, D, H, threads, threads_set, impl, median_ms, min_ms, repeats,
    max_abs_diff, agrees, error}``; ``max_abs_diff`` is against cylstm's output (None for cylstm
    itself, for ``floor``, and when not run); ``median_ms`` is None when the implementation is
    not available or failed (``error`` says why).
    """
    configs = list(CONFIGS) if configs is None else _parse_list(configs, str)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    threads = _parse_list(threads, int)
    if not threads or any(n < 1 for n in threads):
        raise ValueError(f"thread counts must be positive integers, got {threads}")
    impls = list(IMPLS) if impls is None else _parse_list(impls, str)
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        raise ValueError(f"unknown implementations {unknown}; choose from {list(IMPLS)}")
    # Table order; cylstm always runs, as the reference for the output check and the ratios.
    impls = [name for name in IMPLS if name in impls or name == "cylstm"]
    policy = _POLICY["quick" if quick else "full"]
    # Load the optional frameworks up front, so that threadpoolctl sees (and limits) the thread
    # pools they bring and the machine description lists them.
    for name, module in (("torch", "torch"), ("onnxruntime", "onnxruntime")):
        if name in impls:
            try:
                __import__(module)
            except Exception:  # noqa: BLE001 - reported by the builder as "not available"
                pass

    cells = [(c, n) for c in configs for n in threads]
    bar = None
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=len(cells), desc="cylstm benchmark", unit="cell", file=sys.stderr)

    load_before = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    rows, notes = [], []
    threads_uncontrolled = set()
    started = time.perf_counter()
    for config in configs:
        T, B, D, H = CONFIGS[config]
        case = _Case(T, B, D, H)
        for n in threads:
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
                cell_rows, cell_notes = _run_cell(case, n, impls, policy, repeats, settle)
            cell_seconds = round(time.perf_counter() - cell_start, 2)
            other_cpu = _other_cpu(before, _cpu_snapshot())
            if other_cpu is not None and other_cpu > _BUSY_WARNING:
                cell_notes.append(f"other processes kept {other_cpu:.2f} CPUs busy during this "
                                  "cell: its times are unreliable")
            if not limit.controlled:
                threads_uncontrolled.add(n)
            for row in cell_rows:
                rows.append({"config": config, "T": T, "B": B, "D": D, "H": H, "threads": n,
                             "threads_set": limit.controlled, "other_cpu": other_cpu,
                             "cell_seconds": cell_seconds, **row})
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

    machine = machine_info()
    machine["load_average_before"] = load_before
    return {
        "machine": machine,
        "settings": {
            "configs": {c: list(CONFIGS[c]) for c in configs},
            "threads": threads,
            "impls": impls,
            "mode": "quick" if quick else "full",
            "warmups": policy[0],
            "repeats": repeats if repeats is not None else f"{policy[1]}-{policy[2]}",
            "dtype": np.dtype(DTYPE).name,
            "tolerance": TOLERANCE,
            "settle_max_s": settle,
            "wait_idle_s": wait_idle,
            "wall_time_s": round(time.perf_counter() - started, 1),
        },
        "rows": rows,
        "notes": notes,
    }


# ----------------------------------------------------------------------------------------------
# Reports


def _cells(result):
    """[(config, threads, {impl: row})] in run order."""
    cells = {}
    for row in result["rows"]:
        cells.setdefault((row["config"], row["threads"]), {})[row["impl"]] = row
    return [(c, n, impls) for (c, n), impls in cells.items()]


def _impls_present(result):
    present = {row["impl"] for row in result["rows"] if row["median_ms"] is not None}
    order = list(result.get("settings", {}).get("impls", IMPLS))
    return [name for name in order if name in present]


def _ms(row):
    if row is None or row["median_ms"] is None:
        return "-"
    flag = "!" if row.get("agrees") is False else ""
    ms = row["median_ms"]
    text = f"{ms:.0f}" if ms >= 1000 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"
    return text + flag


def _ratio(cell, other):
    mine, theirs = cell.get("cylstm"), cell.get(other)
    if (mine is None or theirs is None or mine["median_ms"] is None
            or theirs["median_ms"] is None or theirs["median_ms"] <= 0):
        return "-"
    return f"{mine['median_ms'] / theirs['median_ms']:.2f}"


def _table_data(result):
    impls = _impls_present(result)
    header = (["config", "T", "B", "D", "H", "thr"] + [_SHORT.get(i, i) for i in impls]
              + [f"cy/{_SHORT.get(i, i)}" for i in RATIO_IMPLS])
    lines = []
    for config, n, cell in _cells(result):
        any_row = next(iter(cell.values()))
        lines.append([config, str(any_row["T"]), str(any_row["B"]), str(any_row["D"]),
                      str(any_row["H"]), str(n)]
                     + [_ms(cell.get(i)) for i in impls]
                     + [_ratio(cell, i) for i in RATIO_IMPLS])
    return header, lines, len(impls)


def format_table(result):
    """A plain-text table: one line per (config, threads), median ms per implementation, then
    cylstm's time over floor, torch, onnxruntime and numpy (below 1 means cylstm is faster)."""
    header, lines, n_impls = _table_data(result)
    widths = [max(len(row[k]) for row in [header] + lines) for k in range(len(header))]
    first_ms, first_ratio = 6, 6 + n_impls

    def fmt(row):
        parts = []
        for k, cell in enumerate(row):
            if k in (first_ms, first_ratio):
                parts.append("|")
            parts.append(cell.ljust(widths[k]) if k == 0 else cell.rjust(widths[k]))
        return " ".join(parts)

    text = [fmt(header)]
    text.append("-" * len(text[0]))
    text.extend(fmt(row) for row in lines)
    settings = result.get("settings", {})
    text.append("")
    text.append(f"median milliseconds per forward pass ({settings.get('mode', '?')} run, "
                f"{settings.get('dtype', 'float32')}); cy/X = cylstm time / X time, "
                "below 1 means cylstm is faster")
    machine = result.get("machine", {})
    if machine:
        versions = machine.get("versions", {})
        text.append(f"{machine.get('cpu', '?')}, {machine.get('cpus_usable', '?')} CPUs; "
                    + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    for note in result.get("notes", []):
        text.append(f"note: {note}")
    return "\n".join(text)


def format_markdown(result):
    """The table as Markdown, with the machine description above it and the notes below."""
    header, lines, _ = _table_data(result)
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
    out.append("Median milliseconds per forward pass; `cy/X` is cylstm's time over X's "
               "(below 1: cylstm is faster). `!` marks an output that disagrees with cylstm's.")
    out.append("")
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(":--" if k == 0 else "--:" for k in range(len(header))) + "|")
    out.extend("| " + " | ".join(row) + " |" for row in lines)
    notes = result.get("notes", [])
    if notes:
        out.append("")
        out.extend(f"- {note}" for note in notes)
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv=None):
    """Command-line entry: run the benchmark, print the table; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m cylstm.benchmark",
        description="Time cylstm's LSTM against its BLAS floor, NumPy, PyTorch and ONNX "
                    "Runtime. Configs (T, B, D, H): "
                    + ", ".join(f"{k}={v}" for k, v in CONFIGS.items()) + ".")
    parser.add_argument("--quick", action="store_true",
                        help="a few repeats per cell (about a minute for everything)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated config names (default: all)")
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--impls", default=None,
                        help="comma-separated implementations (default: all installed): "
                             + ",".join(IMPLS))
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        result = run(configs=args.configs, threads=args.threads, quick=args.quick,
                     progress=not args.no_progress, impls=args.impls, repeats=args.repeats,
                     settle=args.settle, wait_idle=args.wait_idle)
    except ValueError as exc:
        parser.error(str(exc))
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(result))
    failed = [row for row in result["rows"]
              if row["agrees"] is False or (row["impl"] == "cylstm" and row["error"])]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
