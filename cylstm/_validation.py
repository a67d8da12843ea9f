"""Turning what users pass in into arrays the kernels accept, or a clear error.

Every message names the argument and says what was expected and what came.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable, Optional, Protocol, TypeVar

import numpy as np
from numpy.typing import DTypeLike, NDArray

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Weights are stored starting on a cache line: per-step BLAS time at batch 1
# varied up to 1.8x with the alignment of the recurrent weights. The kernel
# copies misaligned ones itself.
ALIGNMENT = 64


def check_dtype(dtype: Any) -> np.dtype[Any]:
    """The model dtype as an np.dtype: float32 or float64 only."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def check_flag(name, value):
    """A bool option; refuses strings and other truthy objects ("false" is not False)."""
    if not (isinstance(value, (bool, np.bool_))
            or (isinstance(value, (int, np.integer)) and value in (0, 1))):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_size(name, value):
    """A positive integer size (input_size, hidden_size, ...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def as_real_array(name: str, value: Any, dtype: Optional[DTypeLike]) -> NDArray[Any]:
    """`value` as an array of `dtype`; a view of it when no conversion is needed.

    Accepts anything np.asarray takes, and torch tensors (detached first).
    Refuses complex, string and other non-numeric input with a TypeError.
    dtype None keeps float32 and float64 and turns anything else into float64.
    """
    if type(value) is np.ndarray and value.dtype == dtype:  # the common case, fast
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:  # e.g. bfloat16, which NumPy lacks
            raise TypeError(
                f"{name} must be an array of real numbers; a {type(value).__name__} "
                f"of dtype {value.dtype} does not convert to NumPy: {exc}") from exc
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be an array of real numbers, could not convert "
            f"{type(value).__name__}: {exc}") from exc
    kind = array.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    if kind not in "biufO":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if kind == "O":
        # astype would quietly turn None into NaN; refuse anything not a real number.
        for item in array.flat:
            if isinstance(item, (list, tuple, np.ndarray)):
                # A ragged nested sequence (NumPy < 1.24 makes it an object array
                # where later releases raise).
                raise TypeError(
                    f"{name} must be an array of real numbers, could not convert "
                    f"{type(value).__name__}: its nested sequences have different lengths")
            if not isinstance(item, numbers.Real):
                raise TypeError(
                    f"{name} must hold real numbers, got an element of type "
                    f"{type(item).__name__}: {item!r}")
    if dtype is None:  # float32 or float64 in either byte order keeps its precision
        native = array.dtype.newbyteorder("=")
        dtype = native if native in SUPPORTED_DTYPES else np.float64
    try:
        return array.astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must hold real numbers, got values that do not convert "
            f"to {np.dtype(dtype)}: {exc}") from exc


class _HasShape(Protocol):
    @property
    def shape(self) -> tuple[int, ...]: ...


_Shaped = TypeVar("_Shaped", bound=_HasShape)


def check_shape(name: str, array: _Shaped, expected: Iterable[int]) -> _Shaped:
    """Raise a ValueError unless array.shape == expected."""
    if array.shape != tuple(expected):
        raise ValueError(
            f"{name} must have shape {tuple(expected)}, got {array.shape}")
    return array


def is_kernel_ready(array, dtype):
    """Whether the kernel can read `array` where it lies: an ndarray of `dtype`,
    aligned, contiguous rows, and every stride a non-negative multiple of the
    item size (a packed record field can have byte strides like 13)."""
    if type(array) is not np.ndarray or array.dtype != dtype or not array.flags.aligned:
        return False
    if array.flags.c_contiguous:  # the common case, decided at once
        return True
    itemsize = array.itemsize
    # An axis of extent 1 is never stepped along: its stride does not matter.
    return ((array.ndim == 0 or array.strides[-1] == itemsize or array.shape[-1] <= 1)
            and all(stride >= 0 and stride % itemsize == 0
                    for stride, extent in zip(array.strides, array.shape) if extent > 1))


def aligned_copy(array, dtype):
    """A C-contiguous copy of `array` in `dtype` starting on a 64-byte boundary."""
    array = np.asarray(array)
    dtype = np.dtype(dtype)
    nbytes = array.size * dtype.itemsize
    buffer = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    offset = -buffer.ctypes.data % ALIGNMENT
    result = buffer[offset:offset + nbytes].view(dtype).reshape(array.shape)
    result[...] = array
    return result


def as_lengths(lengths, batch, steps):
    """Per-row sequence lengths as an (B,) intp array, each in [1, T]."""
    if hasattr(lengths, "detach") and hasattr(lengths, "numpy"):  # a torch tensor
        lengths = lengths.detach().cpu().numpy()
    try:
        array = np.asarray(lengths)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"lengths must be a sequence of integers: {exc}") from exc
    if array.size == 0 and array.ndim == 1:  # [] is float64 to NumPy; an empty batch
        array = array.astype(np.intp)
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {array.dtype}")
    check_shape("lengths", array, (batch,))
    if batch and (array.min() < 1 or array.max() > steps):
        raise ValueError(
            f"lengths must lie in [1, {steps}] (the sequence length T), "
            f"got values from {array.min()} to {array.max()}")
    return array.astype(np.intp)
