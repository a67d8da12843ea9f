# Types of the compiled kernels, cylstm/_lstm.pyx (see its docstrings for the
# shapes). Each kernel is fused over float32 and float64: every array of one
# call has the same dtype, which _F says. The arrays may be any buffer; cylstm
# passes ndarrays. Keep this in step with the `def` entries of the .pyx.
from typing import Dict, Optional, Sequence, Tuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

_F = TypeVar("_F", np.float32, np.float64)

# The batch size from which forward_layer keeps gates and state in the column layout.
COLUMN_LAYOUT_MIN_BATCH: int
# The ways forward_layer can run the per-step product (its `strategy`).
STRATEGIES: Tuple[str, ...]

# The environment variable that chooses the gate math's SIMD path at import.
SIMD_ENVIRONMENT_VARIABLE: str
# Every SIMD path of the gate math this build has, the most portable first.
SIMD_PATHS: Tuple[str, ...]

class Race:
    """One race of strategies inside a kernel call (forward_layer's `race`)."""

    budget_fraction: float
    drop: float
    margin: float
    rounds: int
    claimed: bool
    done: bool
    seconds: Dict[str, float]
    winner: Optional[str]
    def __init__(self, budget_fraction: float = ..., drop: float = ..., margin: float = ...,
                 rounds: int = ...) -> None: ...

def simd_path() -> str: ...
def simd_paths() -> Tuple[str, ...]: ...
def default_strategy(steps: int, batch: int) -> str: ...
def default_chunk_bytes() -> int: ...
def forward_layer(
    x: NDArray[_F],
    w_ih: NDArray[_F],
    w_hh: NDArray[_F],
    bias: NDArray[_F],
    h: NDArray[_F],
    c: NDArray[_F],
    out: NDArray[_F],
    *,
    w_hr: Optional[NDArray[_F]] = None,
    bias_hh: Optional[NDArray[_F]] = None,
    lengths: Optional[ArrayLike] = None,
    reverse: bool = False,
    keep_act: Optional[NDArray[_F]] = None,
    keep_c: Optional[NDArray[_F]] = None,
    h_mask: Optional[NDArray[_F]] = None,
    strategy: Optional[str] = None,
    chunk_bytes: Optional[int] = None,
    race: Optional[Race] = None,
    simd: Optional[str] = None,
    peephole: Optional[NDArray[_F]] = None,
    clip: Optional[float] = None,
    input_forget: bool = False,
    activations: Optional[Sequence[Tuple[str, float, float]]] = None,
    _gate_math: bool = True,
) -> Optional[str]: ...
def backward_layer(
    x: NDArray[_F],
    w_ih: NDArray[_F],
    w_hh: NDArray[_F],
    h0: NDArray[_F],
    c0: NDArray[_F],
    out: NDArray[_F],
    act: NDArray[_F],
    cell_state: NDArray[_F],
    grad_out: NDArray[_F],
    grad_h_n: NDArray[_F],
    grad_c_n: NDArray[_F],
    grad_x: NDArray[_F],
    grad_h0: NDArray[_F],
    grad_c0: NDArray[_F],
    grad_w_ih: NDArray[_F],
    grad_w_hh: NDArray[_F],
    grad_bias: NDArray[_F],
    *,
    w_hr: Optional[NDArray[_F]] = None,
    grad_w_hr: Optional[NDArray[_F]] = None,
    lengths: Optional[ArrayLike] = None,
    reverse: bool = False,
    h_mask: Optional[NDArray[_F]] = None,
    peephole: Optional[NDArray[_F]] = None,
    grad_peephole: Optional[NDArray[_F]] = None,
    clip: Optional[float] = None,
    input_forget: bool = False,
    activations: Optional[Sequence[Tuple[str, float, float]]] = None,
    simd: Optional[str] = None,
) -> None: ...
