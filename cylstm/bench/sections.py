"""The kinds of cell: for each section, its case, the implementations it times, how it is
checked and repeated, and the columns of its table.

``forward`` is the main table (configs a to e); the others are the sections below it.
"""

from . import implementations as impl
from .configs import CASES

#: Implementations of the main table, in table order. cylstm is the reference for the output
#: check.
IMPLS = ("cylstm", "kernel", "floor", "numpy", "torch", "onnxruntime")

#: Implementations that only the sections have: ``padded`` is cylstm on the full padded batch,
#: without ``lengths`` (section ``lengths``).
EXTRA_IMPLS = ("padded", "peepholes", "activations", "peepholes-ort")

#: Short names in table headers.
SHORT = {"onnxruntime": "ort", "peepholes": "peep", "activations": "acts",
         "peepholes-ort": "peep-ort"}


class Section:
    """One kind of cell: its case, its implementations and how its table looks."""

    def __init__(self, name, title, builders, ratios, unit="ms", unchecked=(),
                 threads=None, lead=(), tail=(), extra=None, repeat_scale=1):
        self.name = name
        self.title = title
        self.case = CASES[name]
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


def any_row(cell):
    """The cylstm row of a cell {impl: row}, else any row."""
    return cell.get("cylstm") or next(iter(cell.values()))


def _percent(key):
    def column(cell):
        value = any_row(cell).get(key)
        return "-" if value is None else f"{100 * value:.0f}%"

    return column


def _peak(cell):
    value = cell.get("cylstm", {}).get("peak_mb")
    return "-" if value is None else f"{value:.1f}"


SECTIONS = {
    "forward": Section(
        "forward", "one layer, forward pass (median ms per call)",
        {"cylstm": impl.build_cylstm, "kernel": impl.build_kernel, "floor": impl.build_floor,
         "numpy": impl.build_numpy, "torch": impl.build_torch,
         "onnxruntime": impl.build_onnxruntime},
        ("floor", "torch", "onnxruntime", "numpy"), unchecked={"floor"}),
    "bidirectional": Section(
        "bidirectional", "two layers, bidirectional, forward pass (median ms per call; ort runs "
        "model.to_onnx())",
        {"cylstm": impl.build_cylstm, "torch": impl.build_torch,
         "onnxruntime": impl.build_onnxruntime},
        ("torch", "onnxruntime"),
        lead=(("layers", lambda cell: str(any_row(cell).get("layers", "-"))),)),
    "lengths": Section(
        "lengths", "variable lengths uniform in [T/4, T] (median ms per call; padded = cylstm on "
        "the padded batch without lengths; torch packs and unpacks)",
        {"cylstm": impl.build_lengths_cylstm, "padded": impl.build_cylstm,
         "torch": impl.build_lengths_torch, "onnxruntime": impl.build_lengths_onnxruntime},
        ("padded", "torch", "onnxruntime"), unchecked={"padded"},
        lead=(("valid", _percent("valid_fraction")),)),
    "training": Section(
        "training", "training step, forward + backward (median ms per step; peak MB: "
        "tracemalloc peak of one cylstm step)",
        {"cylstm": impl.build_train_cylstm, "torch": impl.build_train_torch},
        ("torch",), tail=(("peak MB", _peak),), extra=impl.train_peak_mb),
    "stream": Section(
        "stream", "streaming, batch 1, one step per call with the state carried (median "
        "microseconds per step over every call; T = steps per block)",
        {"cylstm": impl.build_stream_cylstm, "torch": impl.build_stream_torch},
        ("torch",), unit="us", threads=(1,), repeat_scale=20),
    "cells": Section(
        "cells", "the cell's variants, one layer (median ms per call; cylstm = the plain cell; "
        "peep = peepholes and clip, acts = hard_sigmoid and softsign, same weights; peep-ort = "
        "ONNX Runtime on the peephole model's to_onnx(); cy/X below 1: X costs more)",
        {"cylstm": impl.build_cylstm, "peepholes": impl.build_peepholes,
         "activations": impl.build_activations,
         "peepholes-ort": impl.build_peepholes_onnxruntime},
        ("peepholes", "activations"),
        unchecked={"peepholes", "activations", "peepholes-ort"}),
}
