"""Interleaved timing of one cell: warm-up and output check, round-robin repeats, medians.

Within one (config, threads) cell the implementations are timed round-robin, one call (or one
block of steps) each per repeat, with the starting implementation rotated, so that noise from
other work on the machine hits them alike. Before each timed call the process waits (briefly)
until the worker threads the previous call left spinning have gone idle, so that no library
pays for another's threads. Garbage collection is off while timing.
"""

import contextlib
import gc
import os
import sys
import time

import numpy as np

#: Largest difference from cylstm's output that counts as agreement: max |x - cylstm| over
#: max(1, max |cylstm|) (the plain max abs difference for LSTM outputs, which are in [-1, 1]; a
#: relative one for gradients).
TOLERANCE = 1e-4

#: Repeat policy: (warm-up calls, min repeats, max repeats, seconds per cell). The number of
#: repeats is the time budget over the time of one round (one call of every implementation),
#: clipped to [min, max].
POLICY = {
    "quick": (1, 2, 5, 1.0),
    "full": (2, 15, 30, 8.0),
}

#: A cell during which other processes kept more than this many CPUs busy gets a warning note.
BUSY_WARNING = 0.25

# Idle worker threads of OpenBLAS keep spinning for about 0.1 s after a call returns (ONNX
# Runtime's and OpenMP's for less), and on a 2-core machine that spinning would be charged to
# whichever implementation runs next. So before each timed call we sleep in slices of
# _SETTLE_SLICE seconds until a slice in which this process used (almost) no CPU, for at most
# `settle` seconds (default SETTLE_MAX).
_SETTLE_SLICE = 0.005
SETTLE_MAX = 0.3

#: Streaming: the steps of the output check (from the zero state).
STREAM_CHECK_STEPS = 50


class Measured:
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


class StepBlock(Measured):
    """A block of one-step calls, each timed on its own.

    `step(x_t)` runs one step with the carried state and returns its output; `reset()` goes
    back to the zero state; `context()` (optional) is entered around a whole block of steps.
    """

    def __init__(self, step, reset, steps, context=None, check_steps=STREAM_CHECK_STEPS):
        # A block is short (T = 100 steps) and the blocks of the implementations alternate
        # many times: on a shared virtual machine the time of a step drifts between regimes
        # (1.5x) over tenths of a second, and long blocks would put one implementation in a
        # fast regime and the other in a slow one.
        super().__init__(step)
        self.step, self.reset, self.steps, self.context = step, reset, steps, context
        self.check_steps = min(check_steps, len(steps))

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


class ThreadLimit:
    """Limit BLAS/OpenMP pools and torch to `n` threads for the duration of a `with` block.

    ``controlled`` is False when threadpoolctl is not installed (the BLAS count is then unset).
    """

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
            # As a context exits: threadpoolctl then also gives up its hold on
            # OpenBLAS (restore_original_limits alone would keep this thread the
            # only one allowed to change it, and cylstm's own limit would be ignored).
            self._limits.__exit__(None, None, None)
        if self._torch_threads is not None:
            sys.modules["torch"].set_num_threads(self._torch_threads)
        return False


def cpu_snapshot():
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


def other_cpu(before, after):
    """CPUs kept busy by other processes between two snapshots (e.g. 1.0 = one core), or None."""
    wall = after[0] - before[0]
    if before[1] is None or after[1] is None or wall <= 0:
        return None
    other = (after[1] - before[1]) - (after[2] - before[2])
    return round(max(other, 0.0) / wall, 2)


def wait_idle(max_wait, window=0.5):
    """Wait up to max_wait seconds for a `window` in which other processes use (almost) no CPU."""
    deadline = time.perf_counter() + max_wait
    while time.perf_counter() < deadline:
        before = cpu_snapshot()
        time.sleep(window)
        other = other_cpu(before, cpu_snapshot())
        if other is None or other <= BUSY_WARNING / 2:
            return True
    return False


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


def _max_abs_diff(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    d = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
    return float(d) if np.isfinite(d) else float("inf")


def difference(out, reference):
    """max |out - reference| / max(1, max |reference|): the plain max abs difference for LSTM
    outputs (in [-1, 1]), a relative one for large gradients; the worst key for dicts."""
    if isinstance(reference, dict):
        if not isinstance(out, dict) or set(out) != set(reference):
            return float("inf")
        return max((difference(out[key], reference[key]) for key in reference), default=0.0)
    diff = _max_abs_diff(out, reference)
    reference = np.asarray(reference)
    scale = float(np.abs(reference).max()) if reference.size else 1.0
    return diff / max(1.0, scale) if np.isfinite(scale) else float("inf")


def _copy(out):
    if isinstance(out, dict):
        return {key: np.array(value, copy=True) for key, value in out.items()}
    return np.array(out, copy=True)


def _warm_up(spec, case, threads, impls, warmups, rows, notes):
    """Build and run each implementation once; return ({name: Measured}, {name: output},
    seconds of one round)."""
    calls, outputs, round_time = {}, {}, 0.0
    for name in impls:
        try:
            built = spec.builders[name](case, threads)
            measured = built if isinstance(built, Measured) else Measured(built)
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
    return calls, outputs, round_time


def _check_outputs(spec, outputs, rows, notes):
    """Compare every output with cylstm's; record the difference and flag disagreement."""
    reference = outputs.get("cylstm")
    for name in outputs:
        if name in spec.unchecked or name == "cylstm" or reference is None:
            continue
        diff = difference(outputs[name], reference)
        rows[name]["max_abs_diff"] = diff
        rows[name]["agrees"] = diff < TOLERANCE
        if not diff < TOLERANCE:
            notes.append(f"MISMATCH: {name} differs from cylstm by {diff:.3g} "
                         f"(tolerance {TOLERANCE:g}); its time is flagged with '!'")
    if reference is not None:
        rows["cylstm"]["agrees"] = True
    elif outputs:
        notes.append("cylstm produced no output, so no output was checked")


def run_cell(spec, case, threads, impls, policy, repeats=None, settle=SETTLE_MAX):
    """Time `impls` of the section `spec` on one case at one thread count; return
    (rows, notes)."""
    warmups, min_rep, max_rep, budget = policy
    rows = {name: {"impl": name, "median_ms": None, "min_ms": None, "repeats": 0, "calls": 0,
                   "max_abs_diff": None, "agrees": None, "error": None} for name in impls}
    notes = []
    calls, outputs, round_time = _warm_up(spec, case, threads, impls, warmups, rows, notes)
    _check_outputs(spec, outputs, rows, notes)
    del outputs
    if spec.extra is not None and "cylstm" in calls:
        try:
            rows["cylstm"].update(spec.extra(case))
        except Exception as exc:  # noqa: BLE001 - informational only
            notes.append(f"could not measure {spec.name} extras: {type(exc).__name__}: {exc}")

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
    # A new order every round (seeded): in a fixed cyclic order each implementation
    # always ran right after the same one, whose thread pool may still spin (cylstm's
    # 2-thread rows after ONNX Runtime's ran up to 1.4x slower than the bare kernel).
    shuffle = np.random.default_rng(len(order))
    try:
        for r in range(repeats):
            for name in [order[i] for i in shuffle.permutation(len(order))]:
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
                     f"busy after waiting {settle} s (see --settle)")
    for name, ts in times.items():
        if ts:
            rows[name]["median_ms"] = float(np.median(ts)) * 1e3
            rows[name]["min_ms"] = float(np.min(ts)) * 1e3
            rows[name]["repeats"] = rounds[name]
            rows[name]["calls"] = len(ts)
    return [rows[name] for name in impls], notes
