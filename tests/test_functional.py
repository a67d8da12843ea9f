"""cylstm.lstm(x, weight_ih, weight_hh, bias_ih, bias_hh, h0, c0) -> (output, h_n, c_n):
time-major, x (T, B, D) or (T, D); compute dtype = weight_ih's if float32/float64, else
float64."""

import math

import numpy as np
import pytest

import cylstm
from reference import lstm_reference
from testutil import assert_close, random_state, tol


def _weights(rng, D, H, dtype, bias=True):
    k = 1.0 / math.sqrt(H)
    w_ih = rng.uniform(-k, k, (4 * H, D)).astype(dtype)
    w_hh = rng.uniform(-k, k, (4 * H, H)).astype(dtype)
    if not bias:
        return w_ih, w_hh, None, None
    return (w_ih, w_hh, rng.uniform(-k, k, 4 * H).astype(dtype),
            rng.uniform(-k, k, 4 * H).astype(dtype))


def _check(x, w_ih, w_hh, b_ih, b_hh, h0, c0, dtype):
    out, h_n, c_n = cylstm.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    xr = np.asarray(x).astype(dtype)
    unbatched = xr.ndim == 2
    if unbatched:
        xr = xr[:, None]
        h0 = None if h0 is None else np.asarray(h0)[None]
        c0 = None if c0 is None else np.asarray(c0)[None]
    cast = lambda a: None if a is None else np.asarray(a).astype(dtype)  # noqa: E731
    r_out, r_h, r_c = lstm_reference(xr, cast(w_ih), cast(w_hh), cast(b_ih), cast(b_hh),
                                     cast(h0), cast(c0))
    if unbatched:
        r_out, r_h, r_c = r_out[:, 0], r_h[0], r_c[0]
    assert_close(out, r_out, dtype, "output")
    assert_close(h_n, r_h, dtype, "h_n")
    assert_close(c_n, r_c, dtype, "c_n")
    return out, h_n, c_n


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("T,B,D,H", [(1, 1, 1, 1), (7, 3, 3, 5), (4, 37, 6, 9),
                                     (12, 2, 10, 256), (1500, 1, 3, 4)])
def test_functional_matches_reference(T, B, D, H, bias, with_state, dtype, rng):
    w = _weights(rng, D, H, dtype, bias)
    x = rng.standard_normal((T, B, D))
    h0, c0 = random_state(rng, (B, H), dtype) if with_state else (None, None)
    out, h_n, c_n = _check(x, *w, h0, c0, dtype)
    assert out.shape == (T, B, H) and h_n.shape == (B, H) and c_n.shape == (B, H)
    np.testing.assert_array_equal(h_n, out[-1])


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
def test_functional_unbatched(with_state, dtype, rng):
    T, D, H = 8, 3, 5
    w = _weights(rng, D, H, dtype)
    x = rng.standard_normal((T, D))
    h0, c0 = random_state(rng, (H,), dtype) if with_state else (None, None)
    out, h_n, c_n = _check(x, *w, h0, c0, dtype)
    assert out.shape == (T, H) and h_n.shape == (H,) and c_n.shape == (H,)


def test_functional_only_h0_or_only_c0(dtype, rng):
    """h0 without c0 (and vice versa): the missing one is zeros."""
    T, B, D, H = 5, 2, 3, 4
    w = _weights(rng, D, H, dtype)
    x = rng.standard_normal((T, B, D))
    h0, c0 = random_state(rng, (B, H), dtype)
    _check(x, *w, h0, None, dtype)
    _check(x, *w, None, c0, dtype)


def test_functional_keywords_and_equals_model(dtype, rng):
    T, B, D, H = 6, 4, 3, 5
    model = cylstm.LSTM(D, H, dtype=dtype, seed=11)
    x = rng.standard_normal((T, B, D))
    h0, c0 = random_state(rng, (B, H), dtype)
    out_m, (h_m, c_m) = model(x, (h0[None], c0[None]))
    out, h_n, c_n = cylstm.lstm(
        x, weight_ih=model.weight_ih_l0, weight_hh=model.weight_hh_l0,
        bias_ih=model.bias_ih_l0, bias_hh=model.bias_hh_l0, h0=h0, c0=c0)
    np.testing.assert_allclose(out, out_m, **tol(dtype))
    np.testing.assert_allclose(h_n, h_m[0], **tol(dtype))
    np.testing.assert_allclose(c_n, c_m[0], **tol(dtype))


@pytest.mark.parametrize("w_dtype,expected", [
    (np.float32, np.float32), (np.float64, np.float64),
    (np.float16, np.float64), (np.int64, np.float64), (np.int32, np.float64),
])
def test_functional_compute_dtype_follows_weight_ih(w_dtype, expected, rng):
    T, B, D, H = 4, 2, 3, 2
    w_ih = rng.integers(-2, 3, (4 * H, D)).astype(w_dtype)
    w_hh = rng.integers(-2, 3, (4 * H, H)).astype(w_dtype)
    b = rng.integers(-1, 2, 4 * H).astype(w_dtype)
    x = rng.standard_normal((T, B, D)).astype(np.float32)  # input dtype does not decide
    out, h_n, c_n = _check(x, w_ih, w_hh, b, b, None, None, expected)
    assert out.dtype == h_n.dtype == c_n.dtype == expected


def test_functional_lists(rng):
    """Plain nested lists: weight_ih is not float32/float64 -> float64."""
    T, B, D, H = 3, 2, 2, 3
    w = [a.tolist() for a in _weights(rng, D, H, np.float64)]
    x = rng.standard_normal((T, B, D)).tolist()
    h0 = [[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]]
    out, h_n, c_n = _check(x, *w, h0, h0, np.float64)
    assert out.dtype == np.float64


def test_functional_float64_input_float32_weights(rng):
    """float32 weights: float64 x and state are rounded to float32, result is float32."""
    T, B, D, H = 5, 3, 4, 6
    w = _weights(rng, D, H, np.float32)
    x = rng.standard_normal((T, B, D))
    h0, c0 = random_state(rng, (B, H), np.float64)
    out, h_n, c_n = _check(x, *w, h0, c0, np.float32)
    out32, h32, c32 = cylstm.lstm(x.astype(np.float32), *w, h0.astype(np.float32),
                                  c0.astype(np.float32))
    np.testing.assert_array_equal(out, out32)
    np.testing.assert_array_equal(h_n, h32)
    np.testing.assert_array_equal(c_n, c32)


def test_functional_bias_none_equals_zero_bias(dtype, rng):
    T, B, D, H = 5, 2, 3, 4
    w_ih, w_hh, _, _ = _weights(rng, D, H, dtype)
    x = rng.standard_normal((T, B, D))
    a = cylstm.lstm(x, w_ih, w_hh)
    z = np.zeros(4 * H, dtype)
    b = cylstm.lstm(x, w_ih, w_hh, z, z)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p, q, **tol(dtype))
    assert np.abs(a[0]).max() > 1e-3


def test_functional_empty(dtype, rng):
    D, H, B = 3, 4, 2
    w = _weights(rng, D, H, dtype)
    h0, c0 = random_state(rng, (B, H), dtype)
    out, h_n, c_n = cylstm.lstm(np.zeros((0, B, D)), *w, h0, c0)
    assert out.shape == (0, B, H) and out.dtype == dtype
    assert_close(h_n, h0, dtype)
    assert_close(c_n, c0, dtype)
    out, h_n, c_n = cylstm.lstm(np.zeros((0, B, D)), *w)
    assert out.shape == (0, B, H)
    np.testing.assert_array_equal(h_n, np.zeros((B, H)))
    np.testing.assert_array_equal(c_n, np.zeros((B, H)))
    assert h_n.dtype == c_n.dtype == dtype
    out, h_n, c_n = cylstm.lstm(rng.standard_normal((5, 0, D)), *w)
    assert out.shape == (5, 0, H) and h_n.shape == (0, H) and c_n.shape == (0, H)
    assert out.dtype == dtype
    out, h_n, c_n = cylstm.lstm(np.zeros((0, D)), *w)
    assert out.shape == (0, H) and h_n.shape == (H,) and c_n.shape == (H,)
    np.testing.assert_array_equal(h_n, np.zeros(H))
