"""An LSTM's configuration and parameter layout: names, shapes and kernel order.

The layout is PyTorch's, because most trained LSTMs come from there: for
layer k, `weight_ih_l{k}` (4H, D_k), `weight_hh_l{k}` (4H, H_out),
`bias_ih_l{k}` and `bias_hh_l{k}` (4H,), `weight_hr_l{k}` (proj_size, H) with
a projection, suffix `_reverse` for the backward direction; gate order i, f,
g, o. Every other module asks here for names and shapes, and checks a state
dict here (the model, the file formats, unpickling).
"""
from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._validation import as_real_array, check_dtype, check_flag, check_shape, check_size

PADDING_MODES = ("zeros", "carry")
# A state dict of more parameters than this is refused by its count before
# its names are listed (a configuration can claim a billion layers).
NAMES_LISTED_UP_TO = 4096


class Config(NamedTuple):
    """The architecture of an LSTM: everything but the weights. Immutable."""

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    bidirectional: bool
    proj_size: int
    padding: str
    dtype: np.dtype

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features of h per direction: proj_size if set, else hidden_size."""
        return self.proj_size or self.hidden_size

    def as_dict(self) -> dict:
        """The constructor arguments, JSON-ready (the dtype by name)."""
        return {**self._asdict(), "dtype": self.dtype.name}


CONFIG_KEYS = Config._fields


def make_config(input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                bidirectional=False, proj_size=0, padding="zeros", dtype=np.float32) -> Config:
    """A checked Config; the error names the argument and what came."""
    input_size = check_size("input_size", input_size)
    hidden_size = check_size("hidden_size", hidden_size)
    num_layers = check_size("num_layers", num_layers)
    if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral) \
            or proj_size < 0:
        raise ValueError(f"proj_size must be a non-negative int, got {proj_size!r}")
    if proj_size >= hidden_size:
        raise ValueError(
            f"proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}")
    if not isinstance(padding, str) or padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    return Config(
        input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
        bias=check_flag("bias", bias),
        batch_first=check_flag("batch_first", batch_first),
        bidirectional=check_flag("bidirectional", bidirectional), proj_size=int(proj_size),
        padding=padding, dtype=check_dtype(dtype))


def config_from_dict(config) -> Config:
    """A checked Config from a dict of constructor arguments (as as_dict() gives)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    unknown = sorted(str(key) for key in config if key not in CONFIG_KEYS)
    if unknown:
        raise TypeError(f"config has unknown keys {unknown}; expected some of {CONFIG_KEYS}")
    required = [key for key in ("input_size", "hidden_size") if key not in config]
    if required:
        raise TypeError(f"config must give {required}")
    return make_config(**config)


@functools.lru_cache(maxsize=256)
def layer_layout(config: Config, layer: int, direction: int) -> tuple:
    """((name, shape), ...) of one (layer, direction)'s parameters, in kernel order:
    w_ih, w_hh, then b_ih, b_hh with bias, then w_hr with a projection."""
    suffix = f"l{layer}" + ("_reverse" if direction else "")
    gates, width = 4 * config.hidden_size, config.output_size
    inputs = config.input_size if layer == 0 else width * config.num_directions
    layout: list[tuple[str, tuple[int, ...]]] = [
        (f"weight_ih_{suffix}", (gates, inputs)), (f"weight_hh_{suffix}", (gates, width))]
    if config.bias:
        layout += [(f"bias_ih_{suffix}", (gates,)), (f"bias_hh_{suffix}", (gates,))]
    if config.proj_size:
        layout.append((f"weight_hr_{suffix}", (config.proj_size, config.hidden_size)))
    return tuple(layout)


def parameter_count(config: Config) -> int:
    per_direction = 2 + 2 * config.bias + bool(config.proj_size)
    return config.num_layers * config.num_directions * per_direction


@functools.lru_cache(maxsize=64)
def parameter_shapes(config: Config) -> dict:
    """{name: shape} of every parameter, in PyTorch's order. Do not modify."""
    return {name: shape
            for layer in range(config.num_layers)
            for direction in range(config.num_directions)
            for name, shape in layer_layout(config, layer, direction)}


def checked_state_dict(config: Config, state_dict) -> dict:
    """{name: array of config.dtype} from a state dict, every entry checked.

    Names and shapes must match exactly; arrays and torch tensors are
    converted (never the caller's array modified). Shapes are compared before
    anything is converted, and the count before the names are listed.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of parameter names to arrays, "
            f"got {type(state_dict).__name__}")
    expected_count = parameter_count(config)
    if len(state_dict) != expected_count and expected_count > NAMES_LISTED_UP_TO:
        raise ValueError(
            f"state_dict must hold the model's {expected_count} parameters, got "
            f"{len(state_dict)} entries: {some(state_dict)}")
    shapes = parameter_shapes(config)
    missing = [name for name in shapes if name not in state_dict]
    unexpected = [name for name in state_dict if name not in shapes]
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not match the model: missing {some(missing)}, "
            f"unexpected {some(unexpected)}; expected the names {some(shapes)}")
    checked = {}
    for name, shape in shapes.items():
        checked[name] = checked_parameter(f"state_dict[{name!r}]", state_dict[name], shape,
                                          config.dtype)
    return checked


def checked_parameter(argument: str, value: Any, shape: tuple[int, ...],
                      dtype: np.dtype[Any]) -> NDArray[Any]:
    """`value` as an array of `dtype` and `shape`, or the usual clear error."""
    if hasattr(value, "shape"):  # check before converting a large wrong array
        check_shape(argument, _Shaped(tuple(value.shape)), shape)
    return check_shape(argument, as_real_array(argument, value, dtype), shape)


class _Shaped(NamedTuple):
    """Something with a shape, for check_shape before an array is converted."""

    shape: tuple


def some(names, limit=12):
    """A list of names for an error message, cut after `limit`."""
    names = [str(name) for name in names]
    if len(names) <= limit:
        return names
    return names[:limit] + [f"... ({len(names) - limit} more)"]
