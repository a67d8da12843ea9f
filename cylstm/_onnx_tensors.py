"""ONNX tensors of an untrusted model as ndarrays: checked types and sizes, external data
read only from the model's own folder.

A TensorProto claims a data type and dims and carries its data inline (raw_data or a typed
field) or in an external file. Every claim is checked against the data actually present
before anything is allocated or read, so a small crafted file cannot make cylstm allocate
what it claims, read outside the model's folder or read from the current directory.
Errors are ValueErrors; the caller adds the model's name.
"""
import os
import stat

import numpy as np

# The element types cylstm reads (weights, shapes, axes): TensorProto.DataType -> NumPy dtype
# and the typed field that holds the values when raw_data is absent.
_TYPES = {1: (np.float32, "float_data"), 11: (np.float64, "double_data"),
          10: (np.float16, "int32_data"), 6: (np.int32, "int32_data"),
          7: (np.int64, "int64_data")}
_TYPE_NAMES = {1: "FLOAT", 11: "DOUBLE", 10: "FLOAT16", 6: "INT32", 7: "INT64"}
_MAX_RANK = 8  # cylstm reads tensors of rank <= 3; a few more cost nothing, 10**6 dims would
_MAX_DIM = 2**40  # more than any file holds; NumPy refuses far less with a bare message
_EXTERNAL = 1  # TensorProto.EXTERNAL


def tensor_to_array(tensor, folder):
    """The ndarray of `tensor`, a TensorProto.

    folder: the directory of the model file, whose files external data may name, or None
    for a model given as bytes or a ModelProto (then external data is refused: there is no
    folder it could safely come from).
    """
    from onnx import numpy_helper

    what = f"tensor {tensor.name!r}"
    if tensor.data_type not in _TYPES:
        raise ValueError(
            f"{what} has element type {tensor.data_type}; cylstm reads "
            f"{', '.join(_TYPE_NAMES.values())} tensors")
    dtype, field = _TYPES[tensor.data_type]
    count = _element_count(tensor.dims, what)
    if tensor.HasField("segment"):
        raise ValueError(f"{what} is stored in segments, which cylstm does not read")
    if tensor.data_location == _EXTERNAL:
        inline = _read_external(tensor, folder, count * np.dtype(dtype).itemsize, what)
    elif tensor.HasField("raw_data"):
        inline = tensor.raw_data
    else:
        present = len(getattr(tensor, field))
        if present != count:
            raise ValueError(
                f"{what} has shape {list(tensor.dims)} ({count} values) but holds {present}")
        return numpy_helper.to_array(tensor)
    if len(inline) != count * np.dtype(dtype).itemsize:
        raise ValueError(
            f"{what} has shape {list(tensor.dims)} of {_TYPE_NAMES[tensor.data_type]} "
            f"({count * np.dtype(dtype).itemsize} bytes) but holds {len(inline)} bytes")
    return np.frombuffer(inline, dtype=np.dtype(dtype).newbyteorder("<")) \
        .astype(dtype).reshape(tuple(tensor.dims))


def _element_count(dims, what):
    if len(dims) > _MAX_RANK:
        raise ValueError(f"{what} has {len(dims)} dimensions; cylstm reads at most {_MAX_RANK}")
    if any(not 0 <= dim <= _MAX_DIM for dim in dims):
        raise ValueError(f"{what} has shape {list(dims)}: each dimension must be in "
                         f"[0, {_MAX_DIM}]")
    count = 1
    for dim in dims:
        count *= dim
    return count


def _read_external(tensor, folder, size, what):
    """The `size` bytes of an external tensor, from a regular file inside `folder`."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if folder is None:
        raise ValueError(
            f"{what} keeps its data in an external file ({location!r}); a model given as "
            "bytes or a ModelProto has no folder to read it from, and cylstm does not read "
            "the current directory: load the model from its path")
    offset = _external_int(info, "offset", 0, what)
    length = _external_int(info, "length", size, what)
    if length != size:
        raise ValueError(
            f"{what}: external data length {length} does not match its shape "
            f"{list(tensor.dims)} ({size} bytes)")
    path = _path_inside(folder, location, what)
    try:
        file, file_size = open_regular_file(path)
    except OSError as exc:
        raise ValueError(f"{what}: cannot open its external data file {location!r}: "
                         f"{exc.strerror}") from exc
    except ValueError as exc:
        raise ValueError(f"{what}: external data {location!r}: {exc}") from None
    with file:
        if offset + size > file_size:
            raise ValueError(
                f"{what}: external data {location!r} holds {file_size} bytes, fewer "
                f"than offset {offset} + length {size}")
        file.seek(offset)
        data = file.read(size)
    if len(data) != size:  # the file shrank while we read it
        raise ValueError(f"{what}: external data {location!r} ended early")
    return data


def open_regular_file(path):
    """(binary file, size) of `path`; a ValueError if it is not a regular file (a FIFO or a
    device such as /dev/zero would be read without end), OSError if it cannot be opened."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_BINARY", 0))
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise ValueError("not a regular file")
        return os.fdopen(descriptor, "rb"), status.st_size
    except BaseException:
        os.close(descriptor)
        raise


def _external_int(info, key, default, what):
    text = info.get(key)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ValueError(f"{what}: external data {key} must be a non-negative integer, "
                         f"got {text[:40]!r}")
    return int(text)


def _path_inside(folder, location, what):
    """The real path of `location` if it lies inside `folder` (symlinks resolved)."""
    parts = location.replace("\\", "/").split("/")
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) \
            or ".." in parts or os.path.splitdrive(location)[0] or "\0" in location:
        raise ValueError(
            f"{what}: external data location {location!r} must be a relative path inside "
            "the model's folder")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, path]) != root or path == root:
        raise ValueError(
            f"{what}: external data location {location!r} leads outside the model's folder "
            f"(to {path!r})")
    return path
