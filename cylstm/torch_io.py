"""PyTorch weights in and out. torch itself is never imported here.

cylstm's parameter names and layouts are torch.nn.LSTM's, so a torch module or
state dict maps one to one; `model.state_dict()` goes back with
`torch.from_numpy`.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._params import some as _some

ARCHITECTURE_KEYS = ("input_size", "hidden_size", "num_layers", "bias",
                     "bidirectional", "proj_size")


def parts_from_torch(source: Any, **config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, state_dict) of a torch.nn.LSTM or its state dict, for LSTM.from_torch.

    A module's `dropout` is kept in the config: it acts in `forward_train`
    only, never in a call (as torch in eval mode).

    Parameters
    ----------
    source : torch.nn.LSTM or mapping of str to array_like
        A module, or a mapping of torch's parameter names to tensors or
        arrays (the architecture is read off the names and shapes).
    **config
        What weights cannot tell (batch_first, padding, dtype); architecture
        arguments may be repeated and must then agree with the weights. The
        dtype defaults to float64 for float64 weights, else float32.

    Returns
    -------
    config : dict
        Keyword arguments of cylstm.LSTM.
    state_dict : dict
        The weights by name, as given (LSTM.from_torch checks and copies them).

    Raises
    ------
    TypeError
        If `source` is neither a torch.nn.LSTM nor a mapping.
    ValueError
        For names or shapes that are not an LSTM's, or arguments that
        disagree with the weights.

    Examples
    --------
    No torch is needed for a state dict of arrays:

    >>> import numpy as np
    >>> from cylstm.torch_io import parts_from_torch
    >>> weights = {"weight_ih_l0": np.zeros((16, 3)), "weight_hh_l0": np.zeros((16, 4))}
    >>> config, state_dict = parts_from_torch(weights, batch_first=True)
    >>> config
    {'batch_first': True, 'input_size': 3, 'hidden_size': 4, 'num_layers': 1, 'bias': False,
     'bidirectional': False, 'proj_size': 0, 'dtype': <class 'numpy.float64'>}
    >>> parts_from_torch(weights, hidden_size=5)
    Traceback (most recent call last):
    ...
    ValueError: hidden_size=5 disagrees with the weights, which have hidden_size=4
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


# Config options torch.nn.LSTM lacks (issue 14's ONNX and Keras variants).
_NO_TORCH_FORM = ("reverse", "go_backwards", "peepholes", "clip", "input_forget", "activations")


def torch_from_parts(config: Mapping[str, Any], state_dict: Mapping[str, Any]) -> Any:
    """A torch.nn.LSTM (float32 or float64 as the config says) holding these weights.

    The config's dropout goes to the module; recurrent_dropout, which torch
    lacks, does not (it acts only in training).

    Parameters
    ----------
    config : mapping
        Every key of cylstm.LSTM.config() but padding, which torch lacks.
    state_dict : mapping of str to array_like
        The weights in torch's names; copied into the module.

    Returns
    -------
    torch.nn.LSTM

    Examples
    --------
    >>> import numpy as np
    >>> from cylstm.torch_io import torch_from_parts
    >>> config = {"input_size": 3, "hidden_size": 4, "num_layers": 1, "bias": False,
    ...           "batch_first": False, "bidirectional": False, "proj_size": 0,
    ...           "dtype": "float64"}
    >>> weights = {"weight_ih_l0": np.ones((16, 3)), "weight_hh_l0": np.zeros((16, 4))}
    >>> module = torch_from_parts(config, weights)
    >>> module
    LSTM(3, 4, bias=False)
    >>> module.weight_ih_l0.dtype, float(module.weight_ih_l0.detach().sum())
    (torch.float64, 48.0)
    """
    variants = [key for key in _NO_TORCH_FORM if config.get(key)]
    if variants:  # torch.nn.LSTM would silently compute the plain cell
        raise NotImplementedError(f"torch.nn.LSTM has no {', '.join(variants)}: this model "
                                  "has no torch form (to_onnx writes every variant)")
    import torch

    module = torch.nn.LSTM(
        config["input_size"], config["hidden_size"], config["num_layers"], bias=config["bias"],
        batch_first=config["batch_first"], bidirectional=config["bidirectional"],
        proj_size=config["proj_size"], dropout=config.get("dropout", 0.0),
        dtype=getattr(torch, str(np.dtype(config["dtype"]))))
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
        hint = (" (a cell runs one step: use cylstm.LSTMCell.from_torch)"
                if kind == "LSTMCell" else "")
        raise TypeError(f"source must be a torch.nn.LSTM, got {what}{hint}")
    architecture = {key: getattr(module, key) for key in ARCHITECTURE_KEYS}
    if getattr(module, "dropout", 0):  # only a module tells; training-time only
        architecture["dropout"] = float(module.dropout)
    return architecture


def architecture_of(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """input_size, hidden_size, num_layers, bias, bidirectional, proj_size from torch's names.

    Reads only the shapes of weight_ih_l0 and weight_hr_l0 and the names; the
    full check of every entry is load_state_dict's.

    Raises
    ------
    ValueError
        Without weight_ih_l0 and weight_hh_l0, for a weight_ih_l0 of a shape
        that is not (4H, D), or for layers not numbered 0, 1, 2, ...

    Examples
    --------
    >>> import cylstm
    >>> from cylstm.torch_io import architecture_of
    >>> model = cylstm.LSTM(3, 8, num_layers=2, proj_size=2, bidirectional=True)
    >>> architecture_of(model.state_dict())
    {'input_size': 3, 'hidden_size': 8, 'num_layers': 2, 'bias': True, 'bidirectional': True,
     'proj_size': 2}
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
            with warnings.catch_warnings():  # NumPy < 1.24 warns on ragged input
                warnings.simplefilter("ignore")
                array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state_dict[{name!r}] is not an array: {exc}") from exc
        if array.dtype == object:  # ragged (NumPy < 1.24) or not numbers
            raise ValueError(f"state_dict[{name!r}] is not an array of numbers")
        shape = array.shape
    return tuple(int(size) for size in shape)


def _dtype_name(value):
    """'float64', 'float32', ... for an ndarray or a torch tensor, without importing torch."""
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    return str(dtype).replace("torch.", "")
