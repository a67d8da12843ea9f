"""Shared fixtures. Tests run against the INSTALLED cylstm (pytest --import-mode=importlib,
started from outside the checkout), so only this folder is put on sys.path, never the repo root
(that would shadow the installed package with the unbuilt source tree)."""

import os
import sys

import numpy as np
import pytest

# The rule's plan in every test (the default; an environment may say otherwise),
# so that results are the same in every run; tests/test_plans.py measures and
# forces each strategy itself.
os.environ["CYLSTM_PLAN"] = "estimate"

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import cylstm  # noqa: E402
from testutil import DTYPES, tol  # noqa: E402


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    """The model dtype; pair with testutil.tol(dtype) / assert_close for its tolerance
    (float32: 1e-5, float64: 1e-12 against the float64 reference)."""
    return request.param


@pytest.fixture
def tolerance(dtype):
    """dict(atol=..., rtol=...) for the current dtype, for np.testing.assert_allclose."""
    return tol(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def make_model():
    """make_model(D, H, dtype=..., bias=..., batch_first=..., seed=...) -> cylstm.LSTM with
    the default seeded init; successive calls get distinct seeds unless one is given."""
    seeds = iter(range(1000, 10**6))

    def make(input_size, hidden_size, dtype=np.float32, bias=True, batch_first=False,
             seed=None):
        return cylstm.LSTM(input_size, hidden_size, bias=bias, batch_first=batch_first,
                           dtype=dtype, seed=next(seeds) if seed is None else seed)

    return make
