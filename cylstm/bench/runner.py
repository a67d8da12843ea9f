"""``run()``: the benchmark's cells, one after another, into one result dict."""

import os
import sys
import time

import numpy as np

from .baseline import key_ratios
from .configs import DTYPE, parse_list, select_configs
from .goals import goals
from .machine import machine_info
from .sections import EXTRA_IMPLS, IMPLS, SECTIONS
from .timing import (BUSY_WARNING, POLICY, SETTLE_MAX, TOLERANCE, ThreadLimit, cpu_snapshot,
                     other_cpu, run_cell)
from .timing import wait_idle as wait_for_quiet  # run()'s argument has the plain name


def _plan(selected, threads, notes):
    """[(config, section, shape, thread counts)]: the cells to run, in order."""
    plan = []
    for config, section, shape in selected:
        spec = SECTIONS[section]
        counts = [n for n in threads if spec.threads is None or n in spec.threads]
        if not counts:
            notes.append(f"config {config} runs at {' or '.join(map(str, spec.threads))} "
                         f"thread(s) only: skipped")
            continue
        plan.append((config, section, shape, counts))
    return plan


def _progress_bar(plan, progress):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=sum(len(counts) for *_, counts in plan), desc="cylstm benchmark",
                unit="cell", file=sys.stderr)


def _notes_after(rows, plan, split_threads, threads_uncontrolled, notes):
    if threads_uncontrolled:
        notes.insert(0, "threadpoolctl is not installed: the BLAS thread count could not be set "
                        "(rows have threads_set = false); only torch and onnxruntime honour the "
                        "threads column")
    unavailable = sorted({r["impl"] for r in rows
                          if r["error"] and r["error"].startswith("not available")})
    for name in unavailable:
        reason = next(r["error"] for r in rows if r["impl"] == name and r["error"])
        notes.append(f"{name} skipped: {reason}")
    if any(n > 1 for *_, counts in plan for n in counts):
        notes.append("cylstm at n > 1 threads: " + (
            "LSTM(num_threads=n), the batch (or the two directions) split over n threads with "
            "single-threaded BLAS; kernel and floor: one time loop over n-thread BLAS; training: "
            "n-thread BLAS" if split_threads else "one time loop over n-thread BLAS"))


def run(configs=None, threads=(1, 2), quick=False, progress=False, impls=None, repeats=None,
        settle=SETTLE_MAX, wait_idle=0, split_threads=False):
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
        the two directions, split over threads with single-threaded BLAS); False: one time
        loop over n-thread BLAS. ``kernel`` and ``floor`` always use n-thread BLAS.

    Each row is ``{config, section, T, B, D, H, threads, threads_set, other_cpu, cell_seconds,
    impl, median_ms, min_ms, repeats, calls, max_abs_diff, agrees, error}`` plus the section's
    own keys (``layers``; ``mean_length``, ``valid_fraction``; ``steps_per_block``; ``peak_mb``
    on training's cylstm rows). ``median_ms`` is per call (per step for ``stream``: the median
    over every timed step); ``max_abs_diff`` is against cylstm's output (None for cylstm
    itself, for ``floor`` and ``padded``, and when not run); ``median_ms`` is None when the
    implementation is not available or failed (``error`` says why).
    """
    selected = select_configs(configs)
    threads = parse_list(threads, int)
    if not threads or any(n < 1 for n in threads):
        raise ValueError(f"thread counts must be positive integers, got {threads}")
    known = IMPLS + EXTRA_IMPLS
    impls = list(known) if impls is None else parse_list(impls, str)
    unknown = [i for i in impls if i not in known]
    if unknown:
        raise ValueError(f"unknown implementations {unknown}; choose from {list(known)}")
    # Table order; cylstm always runs, as the reference for the output check and the ratios.
    impls = [name for name in known if name in impls or name == "cylstm"]
    policy = POLICY["quick" if quick else "full"]
    # Load the optional frameworks up front, so that threadpoolctl sees (and limits) the thread
    # pools they bring and the machine description lists them.
    for name in ("torch", "onnxruntime"):
        if name in impls:
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - reported by the builder as "not available"
                pass

    rows, notes = [], []
    plan = _plan(selected, threads, notes)
    bar = _progress_bar(plan, progress)
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
                wait_for_quiet(wait_idle)
            before = cpu_snapshot()
            cell_start = time.perf_counter()
            with ThreadLimit(n) as limit:
                cell_rows, cell_notes = run_cell(spec, case, n, cell_impls, policy, repeats,
                                                 settle)
            cell_seconds = round(time.perf_counter() - cell_start, 2)
            busy = other_cpu(before, cpu_snapshot())
            if busy is not None and busy > BUSY_WARNING:
                cell_notes.append(f"other processes kept {busy:.2f} CPUs busy during this "
                                  "cell: its times are unreliable")
            if not limit.controlled:
                threads_uncontrolled.add(n)
            for row in cell_rows:
                rows.append({"config": config, "section": section, "T": T, "B": B, "D": D,
                             "H": H, "threads": n, "threads_set": limit.controlled,
                             "other_cpu": busy, "cell_seconds": cell_seconds, **info, **row})
            notes.extend(f"config {config}, {n} thread(s): {note}" for note in cell_notes)
            if bar is not None:
                bar.update(1)
        del case
    if bar is not None:
        bar.close()
    _notes_after(rows, plan, split_threads, threads_uncontrolled, notes)
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
            "cylstm_split_threads": bool(split_threads),
            "wall_time_s": round(time.perf_counter() - started, 1),
        },
        "rows": rows,
        "notes": notes,
    }
    result["goals"] = goals(result)
    result["key_ratios"] = key_ratios(result)
    return result
