"""The regression check for CI: a run's key ratios against benchmarks/baseline.json.

Only ratios, never absolute times: both sides of a ratio are timed interleaved, so a busy or
slower machine moves them far less than it moves times. The check fails only on a gross
regression (a ratio above ``factor`` times its baseline value).
"""

import json
import os

from .ratios import cell_map, measure

#: The ratios the check compares: (measure, configs), one thread.
BASELINE_RATIOS = (
    ("cylstm/floor", ("a", "b", "c", "d", "e")),
    ("cylstm/torch", ("train-c", "train-s", "stream")),
)

#: A ratio fails the check when it exceeds this many times its baseline value (unless the
#: baseline file says otherwise): only a gross regression, not noise.
BASELINE_FACTOR = 1.5


def key_ratios(result):
    """{"<config> <measure>": ratio} for the ratios of ``BASELINE_RATIOS`` this result has."""
    cells = cell_map(result)
    ratios = {}
    for name, configs in BASELINE_RATIOS:
        for config in configs:
            ratio = measure(cells, name, config)
            if ratio is not None:
                ratios[f"{config} {name}"] = round(ratio, 4)
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
