"""Plans: which kernel strategy runs a call shape on this machine.

The best way to run the per-step product depends on the CPU, its BLAS kernels
and the shape (an AMD EPYC with AVX2 and an Intel Xeon with AVX-512 disagreed
by up to 2x), so no constant can be right everywhere. As FFTW plans a
transform and cuDNN picks an algorithm, the first call of a shape chooses:

- "estimate" (the default): the rule (`rule_strategy`: the kernel's
  `default_strategy`, refined by the OpenBLAS core name), no timing: the same
  plan, and so bit-identical results, in every process on one machine; the
  default, as torch.backends.cudnn.benchmark is off by default, for that
  reproducibility;
- "measure": time every strategy on a few steps of a synthetic problem of that
  shape, within a small budget, and keep the fastest, unless it beats the
  rule's choice by less than MARGIN (close races would flip from one process
  to the next). Not the default yet: on a shared 2-core VM under load, a few
  steps' timings varied by 10x and more between runs, enough to pick a
  strategy 2x slower than the rule's;
- a strategy name (one of `_lstm.STRATEGIES`): that strategy for every shape.

The environment variable CYLSTM_PLAN sets the mode for programs that cannot
change code; `cylstm.plans.set_mode` sets it from Python. Plans live in
memory; `save_wisdom` and `load_wisdom` keep them in a small JSON file keyed
by the machine (CPU model, BLAS, cylstm version).
"""
import json
import os
import platform
import threading
import time
import warnings
from typing import NamedTuple, Optional

import numpy as np

from . import _lstm
from ._atomic import atomic_write
from ._version import __version__

ENVIRONMENT_VARIABLE = "CYLSTM_PLAN"
MODES = ("measure", "estimate")
# A measured strategy replaces the rule's only when it is this much faster.
MARGIN = 0.10
# Time spent measuring a shape, once per process: half of what one call of
# it takes by the rule (never the whole sequence twice), within these bounds
# (seconds); steps per candidate run; runs per candidate and length.
BUDGET_FRACTION = 0.5
MIN_BUDGET_SECONDS = 0.005
MAX_BUDGET_SECONDS = 0.05
MAX_STEPS = 16
MIN_DIFFERENCE_STEPS = 4
REPEATS = 3
WISDOM_FORMAT = "cylstm.wisdom"
WISDOM_VERSION = 1


class Shape(NamedTuple):
    """What a plan depends on: one (layer, direction) call of the kernel."""

    dtype: str
    batch: int
    input_size: int
    hidden_size: int
    proj_size: int
    steps_bucket: int  # 1, 2, 4, ... up to 1024: the steps, rounded down to a power of 2
    workers: int  # 1: BLAS threads; k: this call runs on one of k threads


class Plan(NamedTuple):
    strategy: str
    chunk_bytes: int
    source: str  # "rule", "measured", "fixed" or "wisdom"
    seconds_per_step: dict  # {strategy: estimated seconds per step}; empty unless measured


def shape_of(dtype, steps, batch, input_size, hidden_size, proj_size, workers=1) -> Shape:
    bucket = 1 << min(max(int(steps), 1).bit_length() - 1, 10)
    return Shape(np.dtype(dtype).name, int(batch), int(input_size), int(hidden_size),
                 int(proj_size), bucket, int(workers))


class Planner:
    """The plans of this process: a mode and a cache, safe to share between threads."""

    def __init__(self, mode="measure", max_budget_seconds=None):
        # The most time measuring one shape may take (None: MAX_BUDGET_SECONDS).
        self.max_budget_seconds = max_budget_seconds
        self._lock = threading.Lock()
        self._plans = {}
        self._options = {}  # kernel_options' cache: raw arguments -> kernel keywords
        self._measuring = {}  # shape -> Event, while one thread measures it
        self._mode = "measure"
        self.set_mode(mode)

    @property
    def mode(self):
        return self._mode

    def set_mode(self, mode):
        """"measure", "estimate" or a strategy name; forgets the plans made so far."""
        if not isinstance(mode, str) or (mode not in MODES and mode not in _lstm.STRATEGIES):
            raise ValueError(
                f"the plan mode must be one of {MODES} or a strategy {_lstm.STRATEGIES}, "
                f"got {mode!r}")
        with self._lock:
            self._mode = mode
            self._plans.clear()
            self._options.clear()

    def plan(self, shape: Shape) -> Plan:
        """The plan for `shape`: cached, else made as the mode says (measured once,
        however many threads ask at the same time)."""
        plan = self._plans.get(shape)
        if plan is not None:
            return plan
        with self._lock:
            plan = self._plans.get(shape)
            if plan is not None:
                return plan
            mode = self._mode
            if mode != "measure":
                plan = self._plans[shape] = fixed_plan(shape, mode)
                return plan
            waiting = self._measuring.get(shape)
            if waiting is None:
                self._measuring[shape] = threading.Event()
        if waiting is not None:  # another thread measures this shape: use its result
            waiting.wait()
            return self._plans.get(shape) or rule_plan(shape)
        plan = None
        try:
            plan = measured_plan(shape, self.max_budget_seconds)
        finally:
            with self._lock:
                if plan is not None:
                    self._plans[shape] = plan
                self._measuring.pop(shape).set()
        return plan

    def plans(self):
        """{shape: plan} made so far."""
        with self._lock:
            return dict(self._plans)

    def save_wisdom(self, path):
        """Write the measured plans to `path` (JSON, atomically)."""
        entries = [{"shape": shape._asdict(), "strategy": plan.strategy,
                    "chunk_bytes": plan.chunk_bytes}
                   for shape, plan in self.plans().items() if plan.source == "measured"]
        wisdom = {"format": WISDOM_FORMAT, "version": WISDOM_VERSION, "machine": machine_key(),
                  "plans": entries}
        with atomic_write(path, "w") as file:
            json.dump(wisdom, file, indent=1)

    def load_wisdom(self, path):
        """Take the plans in `path` when it was written on this machine and version;
        otherwise (another machine, another version, a damaged file) warn and take
        none. Returns the number of plans taken."""
        try:
            with open(path, encoding="utf-8") as file:
                wisdom = json.loads(file.read(1 << 20))
            if wisdom.get("format") != WISDOM_FORMAT or wisdom.get("version") != WISDOM_VERSION:
                raise ValueError("not a cylstm wisdom file of this version")
            if wisdom.get("machine") != machine_key():
                warnings.warn(f"cylstm: the wisdom in {os.fspath(path)!r} was made on another "
                              f"machine or version ({wisdom.get('machine')}); ignored",
                              RuntimeWarning, stacklevel=2)
                return 0
            plans = {}
            for entry in wisdom["plans"]:
                shape = Shape(**entry["shape"])
                shape = shape_of(shape.dtype, shape.steps_bucket, shape.batch, shape.input_size,
                                 shape.hidden_size, shape.proj_size, shape.workers)
                if entry["strategy"] not in _lstm.STRATEGIES:
                    raise ValueError(f"unknown strategy {entry['strategy']!r}")
                chunk = int(entry["chunk_bytes"])
                if chunk < 1:
                    raise ValueError(f"chunk_bytes {chunk} is not positive")
                plans[shape] = Plan(entry["strategy"], chunk, "wisdom", {})
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            warnings.warn(f"cylstm: cannot read wisdom from {os.fspath(path)!r}: {exc}; ignored",
                          RuntimeWarning, stacklevel=2)
            return 0
        with self._lock:
            self._plans.update(plans)
            self._options.clear()
        return len(plans)


# OpenBLAS's AVX-512 cores, where batch-1 products ranked otherwise than on
# the AVX2 cores the kernel's default rule was measured on (Intel Xeon,
# SkylakeX kernels, per step: at H=64 gemm on the transposed w_hh 0.65 us,
# gemv 0.85, gemm on w_hh 1.04; at H=256 gemm on w_hh fastest; at H=512 the
# gemvs, 148-157 us, and gemm 3-4x slower). The column layout won at every
# batch > 1 on both kinds.
AVX512_BLAS_CORES = ("SkylakeX", "Cooperlake", "SapphireRapids")


def rule_strategy(steps: int, batch: int, hidden_size: int, blas_core: str) -> str:
    """The estimate: the kernel's rule, refined for the BLAS core that runs it."""
    if batch == 1 and blas_core in AVX512_BLAS_CORES:
        if hidden_size <= 128:
            return "rows-t-gemm" if steps >= 128 else "rows-gemm"
        if hidden_size <= 384:
            return "rows-gemm"
    return _lstm.default_strategy(steps, batch)


def rule_plan(shape: Shape) -> Plan:
    strategy = rule_strategy(shape.steps_bucket, shape.batch, shape.hidden_size, blas_core())
    return Plan(strategy, _lstm.default_chunk_bytes(), "rule", {})


_BLAS_CORE: list[str] = []  # [name] once known: the BLAS does not change within a process


def blas_core() -> str:
    """The name of the kernels scipy's OpenBLAS runs ("Haswell", "SkylakeX", ...),
    or "" when unknown (another BLAS, or no threadpoolctl)."""
    if not _BLAS_CORE:
        _BLAS_CORE.append(str(scipy_blas_info().get("architecture") or ""))
    return _BLAS_CORE[0]


def scipy_blas_info() -> dict:
    """threadpoolctl's entry for the BLAS scipy's cython_blas calls (numpy may load
    another OpenBLAS, listed first), or {} without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    libraries = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    for info in libraries:
        path = info.get("filepath", "")
        if "scipy" in path and "numpy.libs" not in path:
            return info
    return libraries[0] if libraries else {}


def fixed_plan(shape: Shape, mode) -> Plan:
    if mode == "estimate":
        return rule_plan(shape)
    return Plan(mode, _lstm.default_chunk_bytes(), "fixed", {})


def measured_plan(shape: Shape, max_budget_seconds=None) -> Plan:
    """Time each strategy on a synthetic problem of `shape` (never the user's
    data) and estimate each one's cost at the shape's steps: its time per call
    plus the steps times its time per step.

    The measurement is bounded: about BUDGET_FRACTION of what the rule's plan
    would take for the shape, at least MIN_BUDGET_SECONDS and at most
    MAX_BUDGET_SECONDS; a shape too slow to measure in that keeps the rule.
    """
    rule = rule_plan(shape)
    problem = _Problem(shape)
    problem.time(rule.strategy, 1)  # warms caches and BLAS buffers
    per_call, per_step = problem.cost(rule.strategy, 1)
    budget = max(BUDGET_FRACTION * (per_call + per_step * shape.steps_bucket),
                 MIN_BUDGET_SECONDS)
    budget = min(budget, MAX_BUDGET_SECONDS if max_budget_seconds is None else max_budget_seconds)
    # Each candidate runs n and 2n steps REPEATS times each.
    candidates = len(_lstm.STRATEGIES)
    spare = budget / (2 * REPEATS * candidates) - per_call
    steps = min(MAX_STEPS, shape.steps_bucket, int(spare / (1.5 * max(per_step, 1e-9))))
    if steps < 1:
        return rule._replace(source="rule: too slow to measure")
    costs = {}
    for strategy in [rule.strategy] + [s for s in _lstm.STRATEGIES if s != rule.strategy]:
        per_call, per_step = problem.cost(strategy, steps)
        costs[strategy] = (per_call + shape.steps_bucket * per_step) / shape.steps_bucket
    best = min(costs, key=lambda strategy: costs[strategy])
    if costs[best] < (1 - MARGIN) * costs[rule.strategy]:
        return Plan(best, rule.chunk_bytes, "measured", costs)
    return Plan(rule.strategy, rule.chunk_bytes, "measured", costs)


class _Problem:
    """Random weights and input of a shape, for timing (values do not matter)."""

    def __init__(self, shape: Shape):
        dtype = np.dtype(shape.dtype)
        gates, width = 4 * shape.hidden_size, shape.proj_size or shape.hidden_size
        steps = 2 * min(shape.steps_bucket, MAX_STEPS)

        def array(*dims):  # BLAS and the gate math take as long for any finite values
            return np.full(dims, 0.01, dtype)

        self.x = array(steps, shape.batch, shape.input_size)
        self.w_ih, self.w_hh = array(gates, shape.input_size), array(gates, width)
        self.bias = array(gates)
        self.w_hr = array(width, shape.hidden_size) if shape.proj_size else None
        self.h, self.c = array(shape.batch, width), array(shape.batch, shape.hidden_size)
        self.out = np.empty((steps, shape.batch, width), dtype)

    def cost(self, strategy, n):
        """(seconds per call, seconds per step), from runs of n and 2n steps (the
        fastest of REPEATS each: noise only ever adds time). Below MIN_DIFFERENCE_STEPS
        the difference is mostly noise: the whole time counts as per step."""
        short = min(self.time(strategy, n) for _ in range(REPEATS))
        if n < MIN_DIFFERENCE_STEPS:
            return 0.0, short / n
        long = min(self.time(strategy, 2 * n) for _ in range(REPEATS))
        per_step = max(long - short, 0.0) / n
        return max(short - n * per_step, 0.0), per_step

    def time(self, strategy, steps):
        start = time.perf_counter()
        _lstm.forward_layer(self.x[:steps], self.w_ih, self.w_hh, self.bias, self.h, self.c,
                            self.out[:steps], w_hr=self.w_hr, strategy=strategy)
        return time.perf_counter() - start


def machine_key():
    """What wisdom is valid for: the CPU, the BLAS and cylstm's version."""
    info = scipy_blas_info()
    blas = {key: info.get(key) for key in ("internal_api", "version", "architecture")} \
        if info else {}
    return {"cpu": _cpu_model(), "machine": platform.machine(), "blas": blas,
            "cylstm": __version__, "simd": _lstm.simd_path()}


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


DEFAULT_MODE = "estimate"


def _planner_from_environment():
    """The process's planner, in the mode CYLSTM_PLAN names (a bad value warns:
    importing cylstm must not fail on it)."""
    mode = os.environ.get(ENVIRONMENT_VARIABLE, DEFAULT_MODE)
    try:
        return Planner(mode)
    except ValueError as exc:
        warnings.warn(f"cylstm: {ENVIRONMENT_VARIABLE}: {exc}; using {DEFAULT_MODE!r}",
                      RuntimeWarning, stacklevel=2)
        return Planner(DEFAULT_MODE)


PLANNER = _planner_from_environment()


def kernel_options(dtype, steps, batch, input_size, hidden_size, proj_size, workers=1):
    """The keywords of one kernel call, from the process's planner: strategy, and
    chunk_bytes unless the plan keeps the kernel's default.

    On the hot path of every call (a one-step stream call takes about 10 us): a
    dict lookup on the raw arguments, the steps capped where the buckets end (so
    the cache stays bounded); rounding them to their bucket here took about half
    of this function's time.
    Do not modify the dict returned.
    """
    key = (dtype, steps if steps < 1024 else 1024, batch, input_size, hidden_size, proj_size,
           workers)
    options = PLANNER._options.get(key)
    if options is None:
        plan = PLANNER.plan(shape_of(dtype, steps, batch, input_size, hidden_size, proj_size,
                                     workers))
        options = {"strategy": plan.strategy}
        if plan.chunk_bytes != _lstm.default_chunk_bytes():  # each keyword costs the kernel
            options["chunk_bytes"] = plan.chunk_bytes
        with PLANNER._lock:
            PLANNER._options[key] = options
    return options


def current(shape: Shape) -> Optional[Plan]:
    """The plan made for `shape`, if any (for reports)."""
    return PLANNER.plans().get(shape)
