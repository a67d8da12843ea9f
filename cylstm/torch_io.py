"""PyTorch weights in and out. torch itself is never imported here.

cylstm's parameter names and layouts are torch.nn.LSTM's, so a torch module or
state dict maps one to one; `model.state_dict()` goes back with
`torch.from_numpy`.
"""
import re

import numpy as np

from .lstm import LSTM

ARCHITECTURE_KEYS = ("input_size", "hidden_size", "num_layers", "bias",
                     "bidirectional", "proj_size")


def lstm_from_torch(source, **config):
    """An LSTM with the configuration and weights of a torch.nn.LSTM or its state dict.

    `source` is a torch.nn.LSTM module, or a mapping of torch's parameter
    names to tensors or arrays (the architecture is read off the names and
    shapes). `config` sets what weights cannot tell (batch_first, padding,
    dtype) and may repeat architecture arguments, which must then agree.
    The dtype defaults to float64 for float64 weights, else float32.
    Dropout between layers is a training-time feature and is not applied.
    """
    if hasattr(source, "state_dict") and hasattr(source, "hidden_size"):
        mode = getattr(source, "mode", "LSTM")
        if mode != "LSTM":
            raise TypeError(f"source must be a torch.nn.LSTM, got a {mode} module")
        architecture = {key: getattr(source, key) for key in ARCHITECTURE_KEYS}
        config.setdefault("batch_first", source.batch_first)
        state_dict = source.state_dict()
    elif hasattr(source, "keys"):
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
    model = LSTM(**config)
    model.load_state_dict(state_dict)
    return model


def architecture_of(state_dict):
    """input_size, hidden_size, num_layers, bias, bidirectional, proj_size from torch's names."""
    if "weight_ih_l0" not in state_dict or "weight_hh_l0" not in state_dict:
        raise ValueError(
            "state_dict must hold torch.nn.LSTM parameters (weight_ih_l0, weight_hh_l0, ...), "
            f"got the names {list(state_dict)}")
    layers = {int(match.group(1)) for name in state_dict
              if (match := re.fullmatch(r"weight_ih_l(\d+)", name))}
    shape = np.shape
    return {
        "input_size": shape(state_dict["weight_ih_l0"])[1],
        "hidden_size": shape(state_dict["weight_ih_l0"])[0] // 4,
        "num_layers": max(layers) + 1,
        "bias": "bias_ih_l0" in state_dict,
        "bidirectional": "weight_ih_l0_reverse" in state_dict,
        "proj_size": shape(state_dict["weight_hr_l0"])[0] if "weight_hr_l0" in state_dict else 0,
    }


def _dtype_name(value):
    """'float64', 'float32', ... for an ndarray or a torch tensor, without importing torch."""
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    return str(dtype).replace("torch.", "")
