"""The .npz model file: plain arrays and a JSON header, to and from (config, state_dict).

`cylstm.save` and `cylstm.load` call `save_parts` and `load_parts`.
`save_parts` checks the weights as `load_parts` will, then writes through a
temporary file, so a failure leaves any earlier file untouched. `load_parts`
treats the file as hostile: it never unpickles, and it compares the zip
directory and each member's .npy header with what the JSON header's
configuration implies before it reads (or decompresses) any data, so a small
file cannot make it allocate more than the model it describes. Every problem
with the contents of a file is a ValueError that names it.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Mapping
from typing import Any, Union

import numpy as np
from numpy.typing import NDArray

from ._atomic import atomic_write
from ._params import (
    NAMES_LISTED_UP_TO,
    checked_state_dict,
    config_from_dict,
    parameter_count,
    parameter_shapes,
)

FORMAT = "cylstm.LSTM"
FORMAT_VERSION = 1
HEADER_KEY = "__cylstm_header__"
MAX_HEADER_BYTES = 4096  # the JSON text; save writes about 250 bytes
MAX_NPY_HEADER = 1024    # an .npy header of a 1-D or 2-D array is 128 bytes


def save_parts(path: Union[str, os.PathLike[str]], config: Mapping[str, Any],
               state_dict: Mapping[str, Any]) -> None:
    """Write the model of `config` and `state_dict` to `path` (exactly that name).

    The weights are checked as `load_parts` checks them (names, shapes, dtype)
    before anything is written; the file is replaced atomically, so on any
    error, KeyboardInterrupt included, an earlier file at `path` is left as it
    was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; no extension is added.
    config : mapping
        Keyword arguments of cylstm.LSTM (as LSTM.config() gives).
    state_dict : mapping of str to array_like
        Every weight of that configuration, by name.

    Raises
    ------
    TypeError, ValueError
        "cannot save the model: ..." for a configuration or weights that do
        not match; nothing is written then.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cylstm.files import load_parts, save_parts
    >>> config = {"input_size": 3, "hidden_size": 4, "bias": False, "dtype": "float64"}
    >>> weights = {"weight_ih_l0": np.full((16, 3), 0.5), "weight_hh_l0": np.eye(16, 4)}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.npz")
    ...     save_parts(path, config, weights)
    ...     config, state_dict = load_parts(path)
    >>> config
    {'input_size': 3, 'hidden_size': 4, 'num_layers': 1, 'bias': False, 'batch_first': False,
     'bidirectional': False, 'proj_size': 0, 'padding': 'zeros', 'dtype': 'float64'}
    >>> np.array_equal(state_dict["weight_hh_l0"], np.eye(16, 4))
    True
    >>> save_parts("unused.npz", config, {"weight_ih_l0": np.zeros((16, 3))})
    Traceback (most recent call last):
    ...
    ValueError: cannot save the model: state_dict does not match the model: missing ...
    """
    try:
        spec = config_from_dict(config)
        checked = checked_state_dict(spec, state_dict)
    except (TypeError, ValueError) as exc:
        kind = ValueError if isinstance(exc, ValueError) else TypeError
        raise kind(f"cannot save the model: {exc}") from exc
    header = {"format": FORMAT, "version": FORMAT_VERSION, "config": spec.as_dict()}
    header_bytes = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path, "wb") as file:
        # numpy's stub takes a ** dict to maybe hold its allow_pickle flag
        np.savez(file, **{HEADER_KEY: header_bytes}, **checked)  # type: ignore[arg-type]


def load_parts(path: Union[str, os.PathLike[str]],
               ) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """(config, state_dict) of a model written by `save_parts`, both checked.

    Returns
    -------
    config : dict
        Keyword arguments of cylstm.LSTM, the dtype by name.
    state_dict : dict of str to ndarray
        The weights, bit for bit as they were saved.

    Raises
    ------
    OSError
        What open() raises for a missing or unreadable file
        (FileNotFoundError, PermissionError, ...).
    ValueError
        For a file whose contents are damaged, foreign or of a newer format
        version, naming it.

    Examples
    --------
    See `save_parts`; a file that is not a model:

    >>> import os, tempfile
    >>> from cylstm.files import load_parts
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "notes.npz")
    ...     with open(path, "w") as file:
    ...         _ = file.write("hello")
    ...     load_parts(path)
    Traceback (most recent call last):
    ...
    ValueError: cannot load a cylstm model from '...notes.npz': BadZipFile('File is not a zip file')
    """
    name = os.fspath(path)
    with open(path, "rb") as file:
        try:
            config, weights = _read(file)
            return config, checked_state_dict(config_from_dict(config), weights)
        # A crafted zip can make zipfile, zlib, struct, json or numpy's header
        # parser raise almost anything (NotImplementedError, RecursionError,
        # zlib.error, ...); each one means that this file cannot be a model.
        except Exception as exc:
            reason = str(exc) if isinstance(exc, (ValueError, TypeError)) else repr(exc)
            raise ValueError(f"cannot load a cylstm model from {name!r}: {reason}") from exc


def _read(file):
    """(config, {name: array}) from an open file, every claim checked before data is read."""
    file_size = os.fstat(file.fileno()).st_size
    with zipfile.ZipFile(file) as archive:
        members = {info.filename: info for info in archive.infolist()}
        if len(members) != len(archive.infolist()):
            raise ValueError("its zip directory lists a member twice")
        header = members.pop(HEADER_KEY + ".npy", None)
        if header is None:
            raise ValueError("it has no cylstm header (not written by cylstm.save)")
        config = _parse_header(
            _read_array(archive, file_size, header, np.dtype(np.uint8), None))
        shapes, dtype = _expected_weights(config, members)
        return config, {
            weight: _read_array(archive, file_size, members[weight + ".npy"], dtype, shape)
            for weight, shape in shapes.items()}


def _parse_header(header_bytes):
    """The configuration stored in the header, after checking format and version."""
    try:
        header = json.loads(header_bytes.tobytes().decode("utf-8"))
        fmt, version, config = header["format"], header["version"], header["config"]
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError,
            TypeError) as exc:
        raise ValueError(f"its header is damaged ({exc!r})") from exc
    if fmt != FORMAT:
        raise ValueError(f"its header names the format {fmt!r}, not {FORMAT!r}")
    if type(version) is not int or version < 1:  # JSON true is not version 1
        raise ValueError(f"its header gives the format version {version!r}, not a version")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"it was written in format version {version}; this cylstm reads up to "
            f"version {FORMAT_VERSION} (upgrade cylstm)")
    if not isinstance(config, dict):
        raise ValueError("its header has no configuration")
    return config


def _expected_weights(config, members):
    """({name: shape}, dtype) of the weights `config` implies, checked against the
    file's other `members` (one `name.npy` each); the counts are compared first,
    so a configuration claiming a billion layers builds no billion names."""
    spec = config_from_dict(config)  # the checks of LSTM(), and no weights
    count = parameter_count(spec)
    if count != len(members) and count > NAMES_LISTED_UP_TO:  # else the names say what is wrong
        raise ValueError(f"its configuration needs {count} weights; it holds {len(members)}")
    shapes = parameter_shapes(spec)
    missing = [name for name in shapes if name + ".npy" not in members]
    unknown = sorted(set(members) - {name + ".npy" for name in shapes})
    if missing or unknown:
        raise ValueError("its weights do not match its configuration:"
                         + (f" missing {_some(missing)}" if missing else "")
                         + (f" unknown members {_some(unknown)}" if unknown else ""))
    return shapes, spec.dtype


def _some(names):
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _read_array(archive, file_size, info, dtype, shape):
    """The array in zip member `info`, refused unless its .npy header says `dtype`
    and `shape` (shape None: one dimension of at most MAX_HEADER_BYTES).

    The member's sizes in the zip directory are checked before it is opened
    (zipfile reads a stored member's claimed size in one read, which allocates
    it first), and its .npy header before any data is read; a compressed member
    is never decompressed past the size that `shape` implies."""
    name = info.filename
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"{name} is compressed with zip method {info.compress_type}; "
                         f"cylstm reads stored or deflated members")
    limit = dtype.itemsize * (MAX_HEADER_BYTES if shape is None else math.prod(shape))
    if info.file_size > limit + MAX_NPY_HEADER:
        raise ValueError(f"{name} holds {info.file_size} bytes; its configuration allows "
                         f"{limit} and an .npy header")
    if info.header_offset + info.compress_size > file_size:
        raise ValueError(f"{name} claims {info.compress_size} bytes at offset "
                         f"{info.header_offset}, past the end of the file ({file_size} bytes)")
    with archive.open(info) as member:
        # Version 1.0 only (np.save writes it for any plain array): the header
        # of 2.0 may claim 4 GiB, and zipfile inflates as much as a read asks for.
        version = np.lib.format.read_magic(member)
        if version != (1, 0):
            raise ValueError(f"{name} is in .npy format version {version}; expected (1, 0)")
        stored_shape, fortran_order, stored_dtype = np.lib.format.read_array_header_1_0(member)
        wanted = f"{dtype} {shape}" if shape else f"{dtype} (n,), n <= {MAX_HEADER_BYTES}"
        if shape is None and len(stored_shape) == 1 and stored_shape[0] <= MAX_HEADER_BYTES:
            shape = stored_shape
        if stored_shape != shape or stored_dtype.newbyteorder("=") != dtype:
            raise ValueError(f"{name} holds {stored_dtype} {stored_shape}; expected {wanted}")
        nbytes = dtype.itemsize * math.prod(shape)
        data = member.read(nbytes)  # reaching the end checks the CRC
        if len(data) != nbytes or member.read(1):
            raise ValueError(f"{name} does not hold the {nbytes} bytes of data its "
                             f"header announces")
    return np.frombuffer(data, stored_dtype).reshape(shape, order="F" if fortran_order else "C")
