"""Type aliases of the public API's annotations.

Imported under `typing.TYPE_CHECKING` only (the modules that use them have
`from __future__ import annotations`): annotations cost nothing at import
and ask nothing of the NumPy that is installed.
"""
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

# An array of the model's dtype: float32 or float64.
FloatArray = NDArray[np.floating[Any]]
# (h, c): a hidden and a cell state.
State = Tuple[FloatArray, FloatArray]
# What a call accepts as its initial state: (h0, c0) or None for zeros.
StateLike = Optional[Tuple[ArrayLike, ArrayLike]]
# {parameter name: array}: arrays, torch tensors or anything array-like.
StateDictLike = Mapping[str, Any]
# A seed for the initial weights.
SeedLike = Union[int, np.random.Generator, None]
