"""Saving and loading models as safe files: an .npz of plain arrays and a JSON header.

Loading never unpickles (allow_pickle=False), so a file from anywhere can be
opened without running code. Every problem with a file is a ValueError that
names it.
"""
import json
import os
import zipfile

import numpy as np

from .lstm import LSTM

FORMAT = "cylstm.LSTM"
FORMAT_VERSION = 1
HEADER_KEY = "__cylstm_header__"


def save(path, model):
    """Write `model` to `path` (exactly that name; no extension is added)."""
    if not isinstance(model, LSTM):
        raise TypeError(f"model must be a cylstm.LSTM, got {type(model).__name__}")
    header = {"format": FORMAT, "version": FORMAT_VERSION, "config": model.config()}
    header_bytes = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **{HEADER_KEY: header_bytes}, **model.state_dict())


def load(path):
    """Read a model written by `save`; bit-identical weights, the same configuration."""
    name = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not a saved model")
        with archive:
            if HEADER_KEY not in archive.files:
                raise ValueError("it has no cylstm header (not written by cylstm.save)")
            config = _read_header(archive[HEADER_KEY])
            arrays = {key: archive[key] for key in archive.files if key != HEADER_KEY}
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise ValueError(f"cannot load a cylstm model from {name!r}: {exc}") from exc
    try:
        model = LSTM._from_parts(config, arrays)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot load a cylstm model from {name!r}: {exc}") from exc
    return model


def _read_header(header_bytes):
    """The configuration stored in the header, after checking format and version."""
    try:
        header = json.loads(header_bytes.tobytes().decode("utf-8"))
        fmt, version, config = header["format"], header["version"], header["config"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"its header is damaged ({exc})") from exc
    if fmt != FORMAT:
        raise ValueError(f"its header names the format {fmt!r}, not {FORMAT!r}")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"it was written in format version {version!r}; this cylstm reads up to "
            f"version {FORMAT_VERSION} (upgrade cylstm)")
    if not isinstance(config, dict):
        raise ValueError("its header has no configuration")
    return config
