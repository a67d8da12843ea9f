"""Helpers shared by the test modules (importable because conftest.py puts this folder on
sys.path). Tolerances: agreement with the float64 reference on ordinary data (default init,
inputs ~ N(0, 1))."""

import json
import os

import numpy as np

from reference import reference_module

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def load_golden_cases(filename):
    """{case: {field: array}} from tests/golden/<filename>, whose keys are '<case>/<field>'.

    A 'config' field holds JSON and is returned parsed."""
    with np.load(os.path.join(GOLDEN_DIR, filename), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    cases = {}
    for key, value in arrays.items():
        if "/" in key:
            name, field = key.split("/", 1)
            cases.setdefault(name, {})[field] = value
    for case in cases.values():
        if "config" in case:
            case["config"] = json.loads(str(case["config"]))
    return cases

TOLERANCES = {
    np.dtype(np.float32): dict(atol=1e-5, rtol=1e-5),
    np.dtype(np.float64): dict(atol=1e-12, rtol=1e-12),
}
DTYPES = [np.float32, np.float64]


def tol(dtype):
    return TOLERANCES[np.dtype(dtype)]


def assert_close(actual, expected, dtype, err_msg=""):
    """actual is an ndarray of exactly `dtype` and expected's shape, and agrees with the
    float64 `expected` within the dtype's tolerance."""
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.dtype == np.dtype(dtype), (err_msg, actual.dtype, dtype)
    assert actual.shape == np.shape(expected), (err_msg, actual.shape, np.shape(expected))
    np.testing.assert_allclose(actual, expected, err_msg=err_msg, **tol(dtype))


def run(model, x, hx=None):
    return model(x) if hx is None else model(x, hx)


def check_against_reference(model, x, hx=None):
    """Run model(x, hx) and the reference on the same (dtype-rounded) data and compare
    output, h_n and c_n. Returns the model's results."""
    out, (h_n, c_n) = run(model, x, hx)
    r_out, (r_h, r_c) = reference_module(
        model.state_dict(), x, hx, batch_first=model.batch_first, dtype=model.dtype)
    assert_close(out, r_out, model.dtype, "output")
    assert_close(h_n, r_h, model.dtype, "h_n")
    assert_close(c_n, r_c, model.dtype, "c_n")
    return out, (h_n, c_n)


def random_state(rng, shape, dtype=np.float64, scale=0.5):
    """An (h0, c0) pair of the given shape, entries ~ N(0, scale^2)."""
    return ((rng.standard_normal(shape) * scale).astype(dtype),
            (rng.standard_normal(shape) * scale).astype(dtype))
