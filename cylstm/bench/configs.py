"""The configurations the benchmark times, and the input, weights and model of each.

The main table (``CONFIGS``) is one layer, one direction, full-length sequences; the sections
(``EXTRA_CONFIGS``) are a two-layer bidirectional model, variable lengths, training steps and
streaming. A case holds what every implementation of a cell shares: the input and one cylstm
model, whose weights torch and ONNX Runtime receive through ``to_torch()`` and ``to_onnx()``.
"""

from typing import Any, Union

import numpy as np

from .._validation import aligned_copy

#: The benchmark's dtype.
DTYPE = np.float32

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
    "cells-a": ("cells", (1000, 1, 32, 64)),
    "cells-c": ("cells", (100, 32, 128, 256)),
}

#: The sections a config may name in a mapping given to ``run(configs=...)``.
SECTION_NAMES = ("forward", "bidirectional", "lengths", "training", "stream", "cells")


def _model(D, H, seed, **options):
    from .. import LSTM

    return LSTM(D, H, dtype=DTYPE, seed=seed, **options)


class Case:
    """The input, weights and cylstm model of one config of the main table.

    The kernel's own weight copies (``w_ih``, ``w_hh``, ``bias``) are aligned as the model
    aligns them, so that ``kernel`` and ``floor`` time what the model's call runs.
    """

    split_threads = False  # set by run(): the --split way of using n threads

    def __init__(self, T, B, D, H, seed=0):
        self.shape = (T, B, D, H)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((T, B, D)).astype(DTYPE)
        self.model = _model(D, H, seed)
        sd = self.model.state_dict()
        self.w_ih = aligned_copy(sd["weight_ih_l0"], DTYPE)
        self.w_hh = aligned_copy(sd["weight_hh_l0"], DTYPE)
        self.bias = aligned_copy(sd["bias_ih_l0"] + sd["bias_hh_l0"], DTYPE)

    def info(self) -> dict[str, Any]:
        """Extra columns of this case's rows."""
        return {}


class BidirCase(Case):
    """Two layers, both directions, full-length sequences."""

    layers = 2

    def __init__(self, T, B, D, H, seed=0):
        self.shape = (T, B, D, H)
        self.x = np.random.default_rng(seed).standard_normal((T, B, D)).astype(DTYPE)
        self.model = _model(D, H, seed, num_layers=self.layers, bidirectional=True)

    def info(self):
        return {"layers": self.layers, "directions": 2}


class LengthsCase(Case):
    """One layer; lengths drawn uniformly from [T/4, T] with a fixed seed."""

    def __init__(self, T, B, D, H, seed=0):
        self.shape = (T, B, D, H)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((T, B, D)).astype(DTYPE)
        self.lengths = rng.integers(max(1, T // 4), T + 1, size=B)
        self.model = _model(D, H, seed)
        self.x[np.arange(T)[:, None] >= self.lengths[None, :]] = 0  # padding, as users have it

    def info(self):
        T, B = self.shape[:2]
        return {"mean_length": round(float(self.lengths.mean()), 1),
                "valid_fraction": round(float(self.lengths.sum()) / (T * B), 3)}


class StreamCase(Case):
    """Batch 1, one step per call; T is the number of calls per timed block."""

    def __init__(self, T, B, D, H, seed=0):
        self.shape = (T, B, D, H)
        x = np.random.default_rng(seed).standard_normal((T, 1, B, D)).astype(DTYPE)
        self.steps = list(x)  # T arrays (1, B, D): one time step each
        self.model = _model(D, H, seed)

    def info(self):
        return {"steps_per_block": self.shape[0]}


class TrainCase(Case):
    """One layer; a fixed gradient of the output, grad ~ N(0, 1)."""

    def __init__(self, T, B, D, H, seed=0):
        self.shape = (T, B, D, H)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((T, B, D)).astype(DTYPE)
        self.grad = rng.standard_normal((T, B, H)).astype(DTYPE)
        self.model = _model(D, H, seed)


class CellsCase(Case):
    """One layer with the plain cell, and the same weights in the variant cells: peepholes
    with clip (sigmoid, tanh), and rare activations (hard_sigmoid, softsign)."""

    def __init__(self, T, B, D, H, seed=0):
        super().__init__(T, B, D, H, seed)
        weights = self.model.state_dict()
        peepholes = np.random.default_rng(seed + 1).uniform(-0.3, 0.3, 3 * H).astype(DTYPE)
        self.peephole_model = _variant(D, H, {**weights, "weight_peephole_l0": peepholes},
                                       peepholes=True, clip=3.0)
        self.activation_model = _variant(
            D, H, weights, activations=("hard_sigmoid", "softsign", "softsign"))


def _variant(D, H, weights, **options):
    from .. import LSTM

    model = LSTM(D, H, dtype=DTYPE, **options)
    model.load_state_dict(weights)
    return model


#: section -> the case class of its cells.
CASES = {"forward": Case, "bidirectional": BidirCase, "lengths": LengthsCase,
         "training": TrainCase, "stream": StreamCase, "cells": CellsCase}


def parse_list(value, kind):
    """A list of `kind` from a comma-separated string or an iterable; None stays None."""
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


def select_configs(configs: Union[None, str, list, dict]) -> list:
    """[(name, section, (T, B, D, H))] from config names (a comma-separated string or a list of
    names from CONFIGS and EXTRA_CONFIGS; None: all), or from a mapping of new names to
    (T, B, D, H) (a main-table config) or (section, (T, B, D, H))."""
    if isinstance(configs, dict):
        selected = []
        for name, value in configs.items():
            if (isinstance(value, (tuple, list)) and len(value) == 2
                    and isinstance(value[0], str)):
                section, shape = value
                if section not in SECTION_NAMES:
                    raise ValueError(f"config {name!r}: unknown section {section!r}; choose "
                                     f"from {list(SECTION_NAMES)}")
            else:
                section, shape = "forward", value
            selected.append((str(name), section, _check_shape(name, shape)))
        return selected
    names = list(CONFIGS) + list(EXTRA_CONFIGS) if configs is None else parse_list(configs, str)
    unknown = [c for c in names if c not in CONFIGS and c not in EXTRA_CONFIGS]
    if unknown:
        raise ValueError(f"unknown configs {unknown}; choose from "
                         f"{list(CONFIGS) + list(EXTRA_CONFIGS)}")
    return [(c, "forward", CONFIGS[c]) if c in CONFIGS else (c, *EXTRA_CONFIGS[c])
            for c in dict.fromkeys(names)]
