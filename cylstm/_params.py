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
import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import numpy as np
from numpy.typing import NDArray

from ._validation import as_real_array, check_dtype, check_flag, check_shape, check_size

PADDING_MODES = ("zeros", "carry")


class Activation(NamedTuple):
    """One nonlinearity of the cell, with the ONNX operator's alpha and beta."""

    name: str
    alpha: float = 0.0
    beta: float = 0.0


# Every activation the ONNX LSTM operator lists, by cylstm's name, with the
# default (alpha, beta) of the ONNX operator of that name. ONNX spells them
# "HardSigmoid", Keras "hard_sigmoid": both are accepted (see activation()).
ACTIVATIONS = {
    "sigmoid": (0.0, 0.0),
    "tanh": (0.0, 0.0),
    "relu": (0.0, 0.0),
    "affine": (1.0, 0.0),  # alpha * x + beta
    "leaky_relu": (0.01, 0.0),  # x >= 0 ? x : alpha * x
    "thresholded_relu": (1.0, 0.0),  # x > alpha ? x : 0
    "scaled_tanh": (1.0, 1.0),  # alpha * tanh(beta * x)
    "hard_sigmoid": (0.2, 0.5),  # max(0, min(1, alpha * x + beta))
    "elu": (1.0, 0.0),  # x >= 0 ? x : alpha * (exp(x) - 1)
    "softsign": (0.0, 0.0),  # x / (1 + |x|)
    "softplus": (0.0, 0.0),  # log(1 + exp(x))
}
# The plain LSTM: gates f = sigmoid (i, f, o), g = tanh (candidate), h = tanh
# (of the cell state), in the ONNX operator's order (f, g, h).
DEFAULT_ACTIVATIONS = (Activation("sigmoid"), Activation("tanh"), Activation("tanh"))
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
    # The variants beyond the plain LSTM (ONNX, Keras); the defaults are the plain LSTM.
    reverse: bool = False  # one direction that reads each sequence from its end (ONNX)
    go_backwards: bool = False  # Keras: reversed input, output in the order processed
    peepholes: bool = False  # weight_peephole_l{k} (3H,), i, f, o: gates see c
    clip: Optional[float] = None  # pre-activations clipped to [-clip, clip] (ONNX)
    input_forget: bool = False  # coupled gates: f = 1 - i (ONNX)
    # () for DEFAULT_ACTIVATIONS everywhere, else a triple (f, g, h) per direction.
    activations: tuple = ()
    dropout: float = 0.0  # between layers, in training only (torch's dropout)
    recurrent_dropout: float = 0.0  # on h before the recurrent product, training only (Keras)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def direction_activations(self, direction: int) -> tuple:
        """The (f, g, h) Activations of one direction."""
        return self.activations[direction] if self.activations else DEFAULT_ACTIVATIONS

    @property
    def plain_cell(self) -> bool:
        """True for the plain LSTM cell, which runs the fused SIMD gate math."""
        return not (self.peepholes or self.clip is not None or self.input_forget
                    or self.activations)

    @property
    def output_size(self) -> int:
        """Features of h per direction: proj_size if set, else hidden_size."""
        return self.proj_size or self.hidden_size

    def as_dict(self) -> dict:
        """The constructor arguments, JSON-ready (the dtype by name). The variants
        appear only when set, so a plain LSTM's dict (and file) is as before."""
        plain = {key: value for key, value in self._asdict().items()
                 if key not in VARIANT_DEFAULTS or value != VARIANT_DEFAULTS[key]}
        if self.activations:
            plain["activations"] = [[list(act) for act in triple]
                                    for triple in self.activations]
        return {**plain, "dtype": self.dtype.name}


CONFIG_KEYS = Config._fields
VARIANT_DEFAULTS = Config._field_defaults


def make_config(input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                bidirectional=False, proj_size=0, padding="zeros", dtype=np.float32,
                reverse=False, go_backwards=False, peepholes=False, clip=None,
                input_forget=False, activations=None, dropout=0.0,
                recurrent_dropout=0.0) -> Config:
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
    bidirectional = check_flag("bidirectional", bidirectional)
    reverse = check_flag("reverse", reverse)
    go_backwards = check_flag("go_backwards", go_backwards)
    if bidirectional and (reverse or go_backwards):
        raise ValueError("reverse and go_backwards are for one direction; "
                         "bidirectional=True already runs both")
    if reverse and go_backwards:
        raise ValueError("reverse (ONNX: output in input order) and go_backwards (Keras: "
                         "output in the order processed) exclude each other")
    return Config(
        input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
        bias=check_flag("bias", bias),
        batch_first=check_flag("batch_first", batch_first),
        bidirectional=bidirectional, proj_size=int(proj_size),
        padding=padding, dtype=check_dtype(dtype), reverse=reverse,
        go_backwards=go_backwards, peepholes=check_flag("peepholes", peepholes),
        clip=check_clip(clip), input_forget=check_flag("input_forget", input_forget),
        activations=check_activations(activations, 2 if bidirectional else 1),
        dropout=check_probability("dropout", dropout),
        recurrent_dropout=check_probability("recurrent_dropout", recurrent_dropout))


def check_clip(clip) -> Optional[float]:
    """None, or the positive finite clip threshold as a float."""
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, numbers.Real) \
            or not 0 < float(clip) < math.inf:
        raise ValueError(f"clip must be None or a positive finite number, got {clip!r}")
    return float(clip)


def check_probability(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0 <= float(value) < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def activation(spec, argument="activations") -> Activation:
    """An Activation from a name ("HardSigmoid", "hard_sigmoid"), a (name, alpha,
    beta) sequence (alpha and beta optional) or an Activation; ONNX defaults."""
    if isinstance(spec, str):
        spec = (spec,)
    if not isinstance(spec, (tuple, list)) or not 1 <= len(spec) <= 3 \
            or not isinstance(spec[0], str):
        raise ValueError(f"{argument} entries must be a name or (name, alpha, beta), "
                         f"got {spec!r}")
    name = _snake_case(spec[0])
    if name not in ACTIVATIONS:
        raise ValueError(f"{argument}: unknown activation {spec[0]!r}; expected one of "
                         f"{sorted(ACTIVATIONS)}")
    values = list(ACTIVATIONS[name])
    for position, value in enumerate(spec[1:]):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            raise ValueError(f"{argument}: alpha and beta of {name} must be finite numbers, "
                             f"got {value!r}")
        values[position] = float(value)
    return Activation(name, *values)


def _snake_case(name: str) -> str:
    """"HardSigmoid" -> "hard_sigmoid"; "hard_sigmoid", "Tanh" -> themselves, lower."""
    if "_" in name or name.islower():
        return name.lower()
    return "".join("_" + ch.lower() if ch.isupper() and k else ch.lower()
                   for k, ch in enumerate(name))


def check_activations(activations, num_directions: int) -> tuple:
    """() for the default cell, else a tuple per direction of (f, g, h) Activations.

    Accepts None, one triple (f, g, h) for every direction, or a triple per
    direction (a sequence of num_directions triples, or ONNX's flat list of
    3 * num_directions).
    """
    if activations is None:
        return ()
    if not isinstance(activations, (tuple, list)):
        raise TypeError(f"activations must be None or a sequence, got "
                        f"{type(activations).__name__}")
    entries = list(activations)
    if not entries:
        return ()
    if all(isinstance(entry, (tuple, list)) and len(entry) == 3
           and not isinstance(entry[0], str) for entry in entries):  # per direction
        entries = [item for triple in entries for item in triple]
    if len(entries) == 3:
        entries = entries * num_directions
    if len(entries) != 3 * num_directions:
        raise ValueError(f"activations must give (f, g, h) once or once per direction "
                         f"({3 * num_directions} in all), got {len(entries)}")
    resolved = tuple(activation(entry) for entry in entries)
    if all(resolved[k:k + 3] == DEFAULT_ACTIVATIONS for k in range(0, len(resolved), 3)):
        return ()
    return tuple(resolved[k:k + 3] for k in range(0, len(resolved), 3))


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
    w_ih, w_hh, then b_ih, b_hh with bias, w_hr with a projection, then the
    peephole weights (3H,) for i, f, o with peepholes."""
    suffix = f"l{layer}" + ("_reverse" if direction else "")
    gates, width = 4 * config.hidden_size, config.output_size
    inputs = config.input_size if layer == 0 else width * config.num_directions
    layout: list[tuple[str, tuple[int, ...]]] = [
        (f"weight_ih_{suffix}", (gates, inputs)), (f"weight_hh_{suffix}", (gates, width))]
    if config.bias:
        layout += [(f"bias_ih_{suffix}", (gates,)), (f"bias_hh_{suffix}", (gates,))]
    if config.proj_size:
        layout.append((f"weight_hr_{suffix}", (config.proj_size, config.hidden_size)))
    if config.peepholes:
        layout.append((f"weight_peephole_{suffix}", (3 * config.hidden_size,)))
    return tuple(layout)


def parameter_count(config: Config) -> int:
    per_direction = 2 + 2 * config.bias + bool(config.proj_size) + config.peepholes
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
