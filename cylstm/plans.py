"""How cylstm chooses the fastest way to run a call shape on this machine.

    import cylstm
    cylstm.plans.set_mode("measure")       # the default: race the candidates once per shape
    cylstm.plans.set_mode("estimate")      # rules, no timing: identical results everywhere
    cylstm.plans.set_mode("columns")       # one strategy for every shape
    cylstm.plans.save_wisdom("plans.json") # keep what was measured; load_wisdom to reuse it

The environment variable CYLSTM_PLAN sets the mode at import. See
cylstm/_plan.py for how plans are made; `python -m cylstm plan` shows them.
"""
from typing import Dict, List, Union

from . import _lstm, _plan
from ._plan import ENVIRONMENT_VARIABLE, MODES, Plan, Shape

__all__ = ["ENVIRONMENT_VARIABLE", "MODES", "STRATEGIES", "Plan", "Shape", "describe",
           "get_mode", "load_wisdom", "plan_for", "plans", "save_wisdom", "set_mode"]

#: The ways the kernel can run the per-step product (see cylstm._lstm.forward_layer).
STRATEGIES = _lstm.STRATEGIES


def set_mode(mode: str) -> None:
    """"measure", "estimate" or one of STRATEGIES; forgets the plans made so far.

    Examples
    --------
    >>> import cylstm
    >>> before = cylstm.plans.get_mode()
    >>> cylstm.plans.set_mode("estimate")
    >>> cylstm.plans.get_mode()
    'estimate'
    >>> cylstm.plans.set_mode("fastest")
    Traceback (most recent call last):
    ...
    ValueError: the plan mode must be one of ('measure', 'estimate') or a strategy ...
    >>> cylstm.plans.set_mode(before)
    """
    _plan.PLANNER.set_mode(mode)


def get_mode() -> str:
    """The current mode."""
    return _plan.PLANNER.mode


def plan_for(dtype, steps: int, batch: int, input_size: int, hidden_size: int,
             proj_size: int = 0, workers: int = 1) -> Plan:
    """The plan for one layer and direction of this shape (made now if needed).

    Examples
    --------
    >>> import numpy as np
    >>> import cylstm
    >>> before = cylstm.plans.get_mode()
    >>> cylstm.plans.set_mode("estimate")        # the rule, the same in every process
    >>> plan = cylstm.plans.plan_for(np.float32, steps=100, batch=32, input_size=128,
    ...                              hidden_size=256)
    >>> plan.strategy, plan.source
    ('columns', 'rule')
    >>> cylstm.plans.plan_for(np.float32, 1000, 1, 32, 64).strategy
    'rows-t'
    >>> cylstm.plans.set_mode(before)
    """
    return _plan.PLANNER.plan(_plan.shape_of(dtype, steps, batch, input_size, hidden_size,
                                             proj_size, workers))


def plans() -> Dict[Shape, Plan]:
    """The plans made so far in this process."""
    return _plan.PLANNER.plans()


def save_wisdom(path) -> None:
    """Write the measured plans to `path` (JSON, replaced atomically)."""
    _plan.PLANNER.save_wisdom(path)


def load_wisdom(path) -> int:
    """Take the plans saved in `path` if it comes from this machine and cylstm
    version; warn and take none otherwise. Returns how many were taken."""
    return _plan.PLANNER.load_wisdom(path)


def describe(shapes: Union[List[Shape], None] = None, planner=None) -> str:
    """A table of the plans for `shapes` (default: those made so far): the chosen
    strategy, where it came from and the fastest per-step product of each
    candidate raced, in microseconds (inf: not tried, the budget was spent).
    `planner`: the process's, unless another is given."""
    planner = _plan.PLANNER if planner is None else planner
    chosen = {shape: planner.plan(shape) for shape in shapes} if shapes else planner.plans()
    lines = ["dtype    batch  input  hidden  proj  steps  threads  blas  plan         source    "
             + "  ".join(f"{name:>11}" for name in STRATEGIES) + "  (us per product)"]
    for shape, plan in chosen.items():
        timings = "  ".join(
            f"{plan.product_seconds[name] * 1e6:11.2f}" if name in plan.product_seconds
            else f"{'-':>11}" for name in STRATEGIES)
        lines.append(f"{shape.dtype:<8} {shape.batch:>5}  {shape.input_size:>5}  "
                     f"{shape.hidden_size:>6}  {shape.proj_size:>4}  {shape.steps_bucket:>5}  "
                     f"{shape.workers:>7}  {shape.blas_threads:>4}  {plan.strategy:<11}  "
                     f"{plan.source:<8}  {timings}")
    return "\n".join(lines)
