"""Saving and loading models: `cylstm.save` and `cylstm.load` over the .npz format."""
from __future__ import annotations

import os
from typing import Union

from . import files
from .model import LSTM


def save(path: Union[str, os.PathLike[str]], model: LSTM) -> None:
    """Write `model` to `path` (exactly that name; no extension is added).

    An .npz of plain arrays and a small JSON header (see cylstm.files). The
    weights are checked first, and the file is replaced atomically: on any
    error, KeyboardInterrupt included, an earlier file at `path` stays as it was.

    Raises
    ------
    TypeError
        If `model` is not a cylstm.LSTM.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import cylstm
    >>> model = cylstm.LSTM(3, 4, bidirectional=True, seed=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.npz")
    ...     cylstm.save(path, model)
    ...     restored = cylstm.load(path)
    >>> restored
    LSTM(3, 4, bidirectional=True, dtype=float32)
    >>> np.array_equal(restored.weight_hh_l0_reverse, model.weight_hh_l0_reverse)
    True
    """
    if not isinstance(model, LSTM):
        raise TypeError(f"model must be a cylstm.LSTM, got {type(model).__name__}")
    files.save_parts(path, model.config(), model.state_dict())


def load(path: Union[str, os.PathLike[str]]) -> LSTM:
    """Read a model written by `save`: bit-identical weights, the same configuration.

    Never unpickles.

    Raises
    ------
    OSError
        What open() raises for a missing or unreadable path.
    ValueError
        For a damaged, foreign or newer file, naming it.

    Examples
    --------
    >>> import os, tempfile
    >>> import cylstm
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.npz")
    ...     with open(path, "wb") as file:
    ...         _ = file.write(b"not a model")
    ...     cylstm.load(path)
    Traceback (most recent call last):
    ...
    ValueError: cannot load a cylstm model from '...model.npz': ...
    """
    return LSTM._from_parts(*files.load_parts(path))
