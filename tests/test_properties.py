"""Hypothesis: random shapes (including T = 0 and B = 0), dtypes, layouts, bias, batch_first,
unbatched input and given state, all against the float64 reference."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import cylstm
from reference import lstm_reference
from testutil import assert_close, check_against_reference, tol

SETTINGS = settings(max_examples=30, deadline=None, database=None)

dtypes = st.sampled_from([np.float32, np.float64])
layouts = st.sampled_from(["C", "F", "strided", "readonly"])


def _layout(a, how):
    if how == "F":
        return np.asfortranarray(a)
    if how == "strided":
        big = np.repeat(a, 2, axis=-1)
        return big[..., ::2]
    if how == "readonly":
        a = a.copy()
        a.flags.writeable = False
    return a


@SETTINGS
@given(T=st.integers(0, 25), B=st.integers(0, 6), D=st.integers(1, 9), H=st.integers(1, 12),
       dtype=dtypes, bias=st.booleans(), batch_first=st.booleans(),
       unbatched=st.booleans(), with_state=st.booleans(), layout=layouts,
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 3.0]))
def test_model_matches_reference(T, B, D, H, dtype, bias, batch_first, unbatched,
                                 with_state, layout, seed, scale):
    rng = np.random.default_rng(seed)
    model = cylstm.LSTM(D, H, bias=bias, batch_first=batch_first, dtype=dtype, seed=seed)
    if unbatched:
        x_shape, s_shape = (T, D), (1, H)
    else:
        x_shape = (B, T, D) if batch_first else (T, B, D)
        s_shape = (1, B, H)
    x = _layout(rng.standard_normal(x_shape) * scale, layout)
    hx = None
    if with_state:
        hx = tuple(_layout(rng.standard_normal(s_shape) * 0.5, layout) for _ in range(2))
    keep = [x.copy()] + ([a.copy() for a in hx] if hx else [])
    out, (h_n, c_n) = check_against_reference(model, x, hx)
    exp_out = (T, H) if unbatched else ((B, T, H) if batch_first else (T, B, H))
    assert out.shape == exp_out and h_n.shape == s_shape and c_n.shape == s_shape
    for a, k in zip([x] + (list(hx) if hx else []), keep):
        np.testing.assert_array_equal(a, k)
    if T == 0:   # final state is the initial one
        exp_h = hx[0] if hx else np.zeros(s_shape)
        np.testing.assert_array_equal(h_n, np.asarray(exp_h).astype(dtype))


@SETTINGS
@given(T=st.integers(1, 20), B=st.integers(1, 5), D=st.integers(1, 6), H=st.integers(1, 8),
       split=st.integers(0, 20), dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_split_sequence_continues(T, B, D, H, split, dtype, seed):
    """model(x[:k]) then model(x[k:], state) == model(x) for any k in [0, T]."""
    k = min(split, T)
    rng = np.random.default_rng(seed)
    model = cylstm.LSTM(D, H, dtype=dtype, seed=seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    out, (h_n, c_n) = model(x)
    o1, s1 = model(x[:k])
    o2, (h2, c2) = model(x[k:], s1)
    np.testing.assert_allclose(np.concatenate([o1, o2]), out, **tol(dtype))
    np.testing.assert_allclose(h2, h_n, **tol(dtype))
    np.testing.assert_allclose(c2, c_n, **tol(dtype))


@SETTINGS
@given(T=st.integers(0, 15), B=st.integers(0, 5), D=st.integers(1, 7), H=st.integers(1, 9),
       w_dtype=st.sampled_from([np.float32, np.float64, np.int64]), bias=st.booleans(),
       with_state=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_functional_matches_reference(T, B, D, H, w_dtype, bias, with_state, seed):
    rng = np.random.default_rng(seed)
    compute = np.float64 if w_dtype is np.int64 else w_dtype
    scale = 1.0 if w_dtype is np.int64 else 1.0 / np.sqrt(H)

    def w(*shape):
        a = rng.uniform(-1, 1, shape) * scale
        return np.round(a).astype(w_dtype) if w_dtype is np.int64 else a.astype(w_dtype)

    w_ih, w_hh = w(4 * H, D), w(4 * H, H)
    b_ih, b_hh = (w(4 * H), w(4 * H)) if bias else (None, None)
    x = rng.standard_normal((T, B, D))
    h0 = c0 = None
    if with_state:
        h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    out, h_n, c_n = cylstm.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    c = (lambda a: None if a is None else a.astype(compute))  # noqa: E731
    r_out, r_h, r_c = lstm_reference(c(x), w_ih, w_hh, b_ih, b_hh, c(h0), c(c0))
    assert_close(out, r_out, compute)
    assert_close(h_n, r_h, compute)
    assert_close(c_n, r_c, compute)
