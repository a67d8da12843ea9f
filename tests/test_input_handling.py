"""What the model and cylstm.lstm accept: lists, ints, other float dtypes, F-order, strided
and read-only arrays; none of the caller's arrays is ever modified or aliased; empty T / B."""

import numpy as np
import pytest

import cylstm
from testutil import assert_close, check_against_reference, random_state, tol

T, B, D, H = 6, 3, 4, 5


def _same(a, b):
    for p, q in zip(_flat(a), _flat(b)):
        assert p.dtype == q.dtype and p.shape == q.shape
        np.testing.assert_array_equal(p, q)


def _flat(res):
    out, (h, c) = res
    return [out, h, c]


def test_nested_lists(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    hx = random_state(rng, (1, B, H), dtype)
    _same(model(x.tolist(), (hx[0].tolist(), hx[1].tolist())), model(x, hx))
    _same(model(x.tolist()), model(x))
    out, (h_n, c_n) = check_against_reference(model, x.tolist(), hx)
    assert out.dtype == dtype


def test_hx_as_list_pair(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    x = rng.standard_normal((T, B, D))
    hx = random_state(rng, (1, B, H), dtype)
    _same(model(x, list(hx)), model(x, hx))


def test_integer_input(dtype):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    xi = (np.arange(T * B * D).reshape(T, B, D) % 5 - 2)
    for x in (xi, xi.astype(np.int32), xi.astype(np.int8)):
        _same(model(x), model(x.astype(dtype)))
    out, _ = check_against_reference(model, xi)
    assert out.dtype == dtype and np.abs(out).max() > 1e-3


@pytest.mark.parametrize("in_dtype", [np.float64, np.float32, np.float16, np.int64, np.int16])
def test_any_real_input_dtype_is_converted(in_dtype, dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    x = np.round(rng.standard_normal((T, B, D)) * 2).astype(in_dtype)
    h0, c0 = (np.round(a * 2).astype(in_dtype) for a in random_state(rng, (1, B, H)))
    res = model(x, (h0, c0))
    for a in _flat(res):
        assert a.dtype == dtype
    _same(res, model(x.astype(dtype), (h0.astype(dtype), c0.astype(dtype))))


def test_float64_into_float32_model_is_rounded_first(rng):
    model = cylstm.LSTM(D, H, dtype=np.float32, seed=0)
    x = rng.standard_normal((T, B, D))
    out, (h_n, c_n) = check_against_reference(model, x)
    assert out.dtype == h_n.dtype == c_n.dtype == np.float32
    _same((out, (h_n, c_n)), model(x.astype(np.float32)))


def test_float32_into_float64_model(rng):
    model = cylstm.LSTM(D, H, dtype=np.float64, seed=0)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    out, (h_n, c_n) = check_against_reference(model, x)
    assert out.dtype == np.float64


# --- memory layouts ---------------------------------------------------------------------


def _layouts(rng, dtype):
    """(name, x) pairs: the same values of shape (T, B, D) in various memory layouts."""
    base = rng.standard_normal((T, B, D)).astype(dtype)
    big = np.zeros((2 * T, 2 * B, 3 * D), dtype)
    big[::2, ::2, ::3] = base
    ro = base.copy()
    ro.flags.writeable = False
    rev = np.ascontiguousarray(base[::-1])[::-1]
    bt = np.ascontiguousarray(base.transpose(1, 0, 2)).transpose(1, 0, 2)
    return base, [
        ("fortran", np.asfortranarray(base)),
        ("strided-all", big[::2, ::2, ::3]),
        ("strided-time", np.repeat(base, 2, axis=0)[::2]),
        ("strided-batch", np.repeat(base, 2, axis=1)[:, ::2]),
        ("negative-stride", rev),
        ("transposed-view", bt),
        ("readonly", ro),
    ]


def test_layouts_give_the_same_result(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    base, layouts = _layouts(rng, dtype)
    hx = random_state(rng, (1, B, H), dtype)
    expected = check_against_reference(model, base, hx)
    for name, x in layouts:
        np.testing.assert_array_equal(x, base)  # sanity: same values
        keep = x.copy()
        got = check_against_reference(model, x, hx)
        for p, q in zip(_flat(got), _flat(expected)):
            np.testing.assert_allclose(p, q, err_msg=name, **tol(dtype))
        np.testing.assert_array_equal(x, keep, err_msg=name)


def test_layouts_batch_first_and_unbatched(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, batch_first=True, seed=0)
    x = rng.standard_normal((B, 2 * T, 2 * D)).astype(dtype)
    check_against_reference(model, x[:, ::2, ::2])
    check_against_reference(model, np.asfortranarray(x[:, ::2, ::2]))
    check_against_reference(model, x[0, ::2, ::2])     # unbatched, strided
    check_against_reference(model, np.asfortranarray(x[1, :, ::2]))


def test_state_layouts(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    x = rng.standard_normal((T, B, D))
    h_big, c_big = random_state(rng, (2, 2 * B, 3 * H), dtype)
    h0, c0 = h_big[:1, ::2, ::3], c_big[1:, 1::2, 2::3]   # strided views
    for a in (h_big, c_big):
        a.flags.writeable = False
    keep = (h_big.copy(), c_big.copy())
    ref = check_against_reference(model, x, (h0.copy(), c0.copy()))
    got = check_against_reference(model, x, (h0, c0))
    got_f = check_against_reference(model, x, (np.asfortranarray(h0), np.asfortranarray(c0)))
    for p, q, r in zip(_flat(ref), _flat(got), _flat(got_f)):
        np.testing.assert_allclose(p, q, **tol(dtype))
        np.testing.assert_allclose(p, r, **tol(dtype))
    np.testing.assert_array_equal(h_big, keep[0])
    np.testing.assert_array_equal(c_big, keep[1])


def test_readonly_model_weights(dtype, rng):
    """Weights set read-only by the user still work (the kernel reads through const views)."""
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    x = rng.standard_normal((T, B, D))
    expected = model(x)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        getattr(model, name).flags.writeable = False
    _same(model(x), expected)
    check_against_reference(model, x)


# --- never modified, never aliased -------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_model_never_modifies_or_aliases(batch_first, dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, batch_first=batch_first, seed=0)
    shape = (B, T, D) if batch_first else (T, B, D)
    weights = {k: v.copy() for k, v in model.state_dict().items()}
    for x_dtype in (dtype, np.float64):
        x = rng.standard_normal(shape).astype(x_dtype)
        h0, c0 = random_state(rng, (1, B, H), x_dtype)
        keep = [x.copy(), h0.copy(), c0.copy()]
        out, (h_n, c_n) = model(x, (h0, c0))
        for a, k in zip((x, h0, c0), keep):
            np.testing.assert_array_equal(a, k)
        for r in (out, h_n, c_n):
            for a in (x, h0, c0):
                assert not np.shares_memory(r, a)
        # writing into the results changes neither inputs nor model
        out[...] = 9.0
        h_n[...] = 9.0
        c_n[...] = 9.0
        for a, k in zip((x, h0, c0), keep):
            np.testing.assert_array_equal(a, k)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, weights[k])


def test_functional_never_modifies_or_aliases(dtype, rng):
    m = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    args = [rng.standard_normal((T, B, D)).astype(dtype), m.weight_ih_l0.copy(),
            m.weight_hh_l0.copy(), m.bias_ih_l0.copy(), m.bias_hh_l0.copy(),
            *random_state(rng, (B, H), dtype)]
    keep = [a.copy() for a in args]
    for ro in (False, True):
        for a in args:
            a.flags.writeable = not ro
        out, h_n, c_n = cylstm.lstm(*args)
        for a, k in zip(args, keep):
            np.testing.assert_array_equal(a, k)
        for r in (out, h_n, c_n):
            for a in args:
                assert not np.shares_memory(r, a)
    # F-order and strided weights, not modified either
    f_args = [np.asfortranarray(a) for a in args]
    out2, h2, c2 = cylstm.lstm(*f_args)
    np.testing.assert_allclose(out2, out, **tol(dtype))
    np.testing.assert_allclose(c2, c_n, **tol(dtype))
    for a, k in zip(f_args, keep):
        np.testing.assert_array_equal(a, k)


# --- empty sequences and batches -------------------------------------------------------


def test_empty_time(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    hx = random_state(rng, (1, B, H), dtype)
    out, (h_n, c_n) = model(np.zeros((0, B, D)), hx)
    assert out.shape == (0, B, H) and out.dtype == dtype
    assert_close(h_n, hx[0], dtype)
    assert_close(c_n, hx[1], dtype)
    assert not np.shares_memory(h_n, hx[0]) and not np.shares_memory(c_n, hx[1])
    out, (h_n, c_n) = model(np.zeros((0, B, D)))
    assert out.shape == (0, B, H)
    assert_close(h_n, np.zeros((1, B, H)), dtype)
    assert_close(c_n, np.zeros((1, B, H)), dtype)
    # float64 state into a float32 model: returned in the model dtype
    hx64 = random_state(rng, (1, B, H), np.float64)
    out, (h_n, c_n) = model(np.zeros((0, B, D)), hx64)
    assert h_n.dtype == dtype
    np.testing.assert_array_equal(h_n, hx64[0].astype(dtype))


def test_empty_time_batch_first_and_unbatched(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, batch_first=True, seed=0)
    hx = random_state(rng, (1, B, H), dtype)
    out, (h_n, c_n) = model(np.zeros((B, 0, D)), hx)
    assert out.shape == (B, 0, H) and out.dtype == dtype
    assert_close(h_n, hx[0], dtype)
    assert_close(c_n, hx[1], dtype)
    hx1 = random_state(rng, (1, H), dtype)
    out, (h_n, c_n) = model(np.zeros((0, D)), hx1)
    assert out.shape == (0, H)
    assert_close(h_n, hx1[0], dtype)
    assert_close(c_n, hx1[1], dtype)


def test_empty_batch(dtype, rng):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    out, (h_n, c_n) = model(rng.standard_normal((T, 0, D)))
    assert out.shape == (T, 0, H) and h_n.shape == (1, 0, H) and c_n.shape == (1, 0, H)
    assert out.dtype == h_n.dtype == c_n.dtype == dtype
    out, (h_n, c_n) = model(np.zeros((T, 0, D)), (np.zeros((1, 0, H)), np.zeros((1, 0, H))))
    assert out.shape == (T, 0, H) and h_n.shape == (1, 0, H)
    out, (h_n, c_n) = model(np.zeros((0, 0, D)))
    assert out.shape == (0, 0, H) and h_n.shape == (1, 0, H)
    bf = cylstm.LSTM(D, H, dtype=dtype, batch_first=True, seed=0)
    out, (h_n, c_n) = bf(np.zeros((0, T, D)))
    assert out.shape == (0, T, H) and h_n.shape == (1, 0, H) and c_n.shape == (1, 0, H)

