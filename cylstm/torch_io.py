"""PyTorch weights in and out. torch itself is never imported here.

cylstm's parameter names and layouts are torch.nn.LSTM's, so a torch module or
state dict maps one to one; `model.state_dict()` goes back with
`torch.from_numpy`.
"""
import re
import warnings
from collections.abc import Mapping

import numpy as np

from ._params import some as _some

ARCHITECTURE_KEYS = ("input_size", "hidden_size", "num_layers", "bias",
                     "bidirectional", "proj_size")


def parts_from_torch(source, **config):
    """(config, state_dict) of a torch.nn.LSTM or its state dict, for LSTM.from_torch.

    `source` is a torch.nn.LSTM module, or a mapping of torch's parameter
    names to tensors or arrays (the architecture is read off the names and
    shapes). `config` sets what weights cannot tell (batch_first, padding,
    dtype) and may repeat architecture arguments, which must then agree. The dtype defaults to float64 for float64 weights, else float32.
    Dropout between layers is a training-time feature and is not applied (a
    module with dropout > 0 says so in a warning).
    """
    if _is_module(source):
        architecture = _module_architecture(source)
        config.setdefault("batch_first", source.batch_first)
        state_dict = source.state_dict()
    elif isinstance(source, Mapping):
        state_dict = dict(source)
        architecture = architecture_of(state_dict)
    else:
        raise TypeError(
            f"source must be a torch.nn.LSTM or a state dict, got {type(source).__name__}")
    for key, value in architecture.items():
        if key in config and config[key] != value:
            raise ValueError(
                f"{key}={config[key]!r} disagrees with the weights, which have {key}={value!r}")
        config[key] = value
    if "dtype" not in config:
        config["dtype"] = np.float64 if _dtype_name(state_dict["weight_ih_l0"]) == "float64" \
            else np.float32
    return config, state_dict


def torch_from_parts(config, state_dict):
    """A torch.nn.LSTM (float32 or float64 as the config says) holding these weights."""
    import torch

    module = torch.nn.LSTM(
        config["input_size"], config["hidden_size"], config["num_layers"], bias=config["bias"],
        batch_first=config["batch_first"], bidirectional=config["bidirectional"],
        proj_size=config["proj_size"], dtype=getattr(torch, str(np.dtype(config["dtype"]))))
    module.load_state_dict({name: torch.from_numpy(np.array(value))
                            for name, value in state_dict.items()})
    return module


def _is_module(source):
    """Whether `source` looks like a torch module (without importing torch)."""
    return callable(getattr(source, "state_dict", None)) and callable(
        getattr(source, "parameters", None))


def _module_architecture(module):
    """The architecture of a torch.nn.LSTM module; a clear TypeError for other modules."""
    kind = type(module).__name__
    mode = getattr(module, "mode", None)
    if mode != "LSTM" or not all(hasattr(module, key) for key in ARCHITECTURE_KEYS):
        what = f"a {mode} module" if isinstance(mode, str) else f"a {kind}"
        hint = (" (a cell runs one step; cylstm has no LSTMCell yet: wrap its weights in a "
                "one-layer state dict, weight_ih_l0 etc.)" if kind == "LSTMCell" else "")
        raise TypeError(f"source must be a torch.nn.LSTM, got {what}{hint}")
    dropout = getattr(module, "dropout", 0)
    if dropout:
        warnings.warn(
            f"the torch LSTM has dropout={dropout}; dropout acts only in training and is "
            "not applied by cylstm (as torch in eval mode)", UserWarning, stacklevel=4)
    return {key: getattr(module, key) for key in ARCHITECTURE_KEYS}


def architecture_of(state_dict):
    """input_size, hidden_size, num_layers, bias, bidirectional, proj_size from torch's names.

    Reads only the shapes of weight_ih_l0 and weight_hr_l0 and the names; the
    full check of every entry is load_state_dict's.
    """
    if "weight_ih_l0" not in state_dict or "weight_hh_l0" not in state_dict:
        raise ValueError(
            "state_dict must hold torch.nn.LSTM parameters (weight_ih_l0, weight_hh_l0, ...), "
            f"got the names {_some(state_dict)}")
    first = _shape_of("weight_ih_l0", state_dict["weight_ih_l0"])
    if len(first) != 2 or first[0] % 4 or first[0] < 4 or first[1] < 1:
        raise ValueError(
            "state_dict['weight_ih_l0'] must have shape (4 * hidden_size, input_size) with "
            f"both positive, got {first}")
    layers = sorted({int(match.group(1)) for name in state_dict
                     if (match := re.fullmatch(r"weight_ih_l(\d+)", str(name)))})
    if layers != list(range(len(layers))):
        raise ValueError(
            "state_dict must number its layers 0, 1, 2, ... without gaps, got weight_ih "
            f"for layers {_some(layers)}")
    proj_size = 0
    if "weight_hr_l0" in state_dict:
        projection = _shape_of("weight_hr_l0", state_dict["weight_hr_l0"])
        if len(projection) != 2:
            raise ValueError(
                f"state_dict['weight_hr_l0'] must have shape (proj_size, hidden_size), "
                f"got {projection}")
        proj_size = projection[0]
    return {
        "input_size": first[1],
        "hidden_size": first[0] // 4,
        "num_layers": len(layers),
        "bias": "bias_ih_l0" in state_dict,
        "bidirectional": "weight_ih_l0_reverse" in state_dict,
        "proj_size": proj_size,
    }


def _shape_of(name, value):
    """The shape of an array-like entry, or a ValueError naming it."""
    if value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"state_dict[{name!r}] must be an array, got {type(value).__name__}")
    shape = getattr(value, "shape", None)
    if shape is None:
        try:
            shape = np.shape(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state_dict[{name!r}] is not an array: {exc}") from exc
    return tuple(int(size) for size in shape)


def _dtype_name(value):
    """'float64', 'float32', ... for an ndarray or a torch tensor, without importing torch."""
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    return str(dtype).replace("torch.", "")
