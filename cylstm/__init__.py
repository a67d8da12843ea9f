"""cylstm: a compiled LSTM for NumPy.

The time loop runs in C without the GIL over scipy's BLAS; weights are plain
NumPy arrays in PyTorch's layout.
"""
from ._version import __version__

try:
    from . import _lstm  # noqa: F401  (the compiled kernels)
except ImportError as exc:  # pragma: no cover - exercised from a source checkout
    raise ImportError(
        "cylstm's compiled extension (cylstm._lstm) is not built. "
        "Install the package with `pip install .` from the source checkout "
        "(or `pip install -e . --no-build-isolation` for development), and "
        "import it from outside the checkout."
    ) from exc

from . import optim, plans
from .model import LSTM
from .cell import LSTMCell
from .functional import lstm
from .saving import load, save
from .stream import LSTMStream

__all__ = ["LSTM", "LSTMCell", "LSTMStream", "lstm", "load", "optim", "plans", "save", "__version__"]
