"""The ratios a result yields: cylstm's median time over another's, from one run's rows.

Both sides of a ratio are timed interleaved in one cell, so a busy machine moves them much
less than it moves times; the goals and the regression check compare ratios only.
"""

#: The measures, all at one thread unless said, and how they read.
MEASURES = {
    "cylstm/floor": "cylstm/floor",
    "cylstm/best": "cylstm/min(torch, ort)",  # over the faster of torch and onnxruntime
    "cylstm/torch": "cylstm/torch",
    "threads 1/2": "cylstm 1 thread / 2 threads",  # throughput gained by a second thread
}


def cell_map(result):
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


def measure(cells, name, config):
    """The value of one measure (a key of MEASURES) for one config, or None if not measured."""
    mine = _median(cells, config, 1, "cylstm")
    if mine is None:
        return None
    if name == "threads 1/2":
        other = _median(cells, config, 2, "cylstm")
        return mine / other if other else None
    if name == "cylstm/best":
        others = [t for t in (_median(cells, config, 1, "torch"),
                              _median(cells, config, 1, "onnxruntime")) if t]
        other = min(others) if others else None
    elif name == "cylstm/floor":
        other = _median(cells, config, 1, "floor")
    elif name == "cylstm/torch":
        other = _median(cells, config, 1, "torch")
    else:
        raise ValueError(f"unknown measure {name!r}; choose from {list(MEASURES)}")
    return mine / other if other else None
