"""The speed goals: what cylstm aims at against its BLAS floor and its peers, and whether a
run's ratios reach it on this machine (``python -m cylstm bench --goals``).

Each goal compares two median times measured side by side in one run, as a ratio (cylstm's
time over the other's), with a target. A goal whose cells were not run, or whose peer is not
installed, is left out. Goals are targets, never test failures: a quick run on a busy machine
can miss one by noise alone.
"""

from .ratios import MEASURES, cell_map, measure

#: (measure, configs, op, target, what it means). Measures, one thread unless said (see
#: ratios.MEASURES): "cylstm/floor", "cylstm/best" (cylstm over the faster of torch and
#: onnxruntime), "cylstm/torch", "threads 1/2" (cylstm's 1-thread time over its 2-thread time).
GOALS = (
    ("cylstm/floor", ("a", "b", "c", "d", "e"), "<=", 1.30,
     "gate math and Python layer add at most 30% to the BLAS calls"),
    ("cylstm/floor", ("a", "b", "c", "d", "e"), "<=", 1.10,
     "gate math and Python layer add at most 10% to the BLAS calls"),
    ("cylstm/best", ("a", "b"), "<=", 0.80,
     "batch 1: clearly faster than both PyTorch and ONNX Runtime"),
    ("cylstm/best", ("c", "d", "e"), "<=", 1.15,
     "batched: within 15% of the faster of PyTorch and ONNX Runtime"),
    ("cylstm/torch", ("train-c", "train-s"), "<=", 1.00,
     "a training step no slower than PyTorch's"),
    ("cylstm/torch", ("stream",), "<=", 0.50,
     "a streamed step at most half PyTorch's time"),
    ("threads 1/2", ("c", "d", "e"), ">=", 1.60,
     "two threads give at least 1.6x the throughput of one"),
)

_EXPLAINED = [
    "Speed goals, checked on this machine. Each compares two median times measured side by",
    "side in this run, as cylstm's time over the other's (below 1: cylstm is faster):",
    "cylstm/floor is over the same BLAS calls without the LSTM's gate math (the kernel's floor),",
    "cylstm/min(torch, ort) over the faster of PyTorch and ONNX Runtime on the same weights,",
    "cylstm 1 thread / 2 threads is how much faster two threads are. One thread unless said.",
]


def goals(result):
    """The speed goals (``GOALS``) that this result measures, each a dict ``{config, measure,
    text, label, threads, ratio, op, target, met}``; ``met`` compares the ratio rounded to two
    decimals, as printed."""
    cells = cell_map(result)
    out = []
    for name, configs, op, target, label in GOALS:
        for config in configs:
            ratio = measure(cells, name, config)
            if ratio is None:
                continue
            shown = round(ratio, 2)
            out.append({"config": config, "measure": name, "text": MEASURES[name],
                        "label": label, "threads": "1/2" if name == "threads 1/2" else 1,
                        "ratio": round(ratio, 4), "op": op, "target": target,
                        "met": shown <= target if op == "<=" else shown >= target})
    order = {config: k for k, config in enumerate(dict.fromkeys(r["config"]
                                                               for r in result["rows"]))}
    out.sort(key=lambda g: order.get(g["config"], len(order)))  # stable: GOALS order within
    return out


def listed(result):
    """The result's goals, computed when it has none stored."""
    stored = result.get("goals")
    return goals(result) if stored is None else stored


def verdict(goal):
    """'holds' or 'does not hold'."""
    return "holds" if goal["met"] else "does not hold"


def goal_text(goal):
    """'cylstm/floor 1.20, goal <= 1.10: does not hold'."""
    return (f"{goal['text']} {goal['ratio']:.2f}, goal {goal['op']} {goal['target']:.2f}: "
            f"{verdict(goal)}")


def goal_lines(result):
    """The goals as plain text for a reader who knows nothing of the project's history."""
    found = listed(result)
    if not found:
        return []
    config_width = max(len(g["config"]) for g in found)
    label_width = max(len(g["label"]) for g in found)
    lines = list(_EXPLAINED)
    for g in found:
        lines.append(f"  {g['config']:<{config_width}}  {g['label']:<{label_width}}  "
                     f"{goal_text(g)}")
    held = sum(g["met"] for g in found)
    lines.append(f"{held} of {len(found)} hold on this machine in this run. A quick run, or a "
                 "busy or shared machine, can miss a goal by noise alone: rerun those configs "
                 "(--configs) on a quiet machine before drawing conclusions.")
    return lines
