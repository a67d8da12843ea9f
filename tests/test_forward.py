"""cylstm.LSTM forward pass against the float64 reference, over shapes, bias, given state,
batch_first and unbatched input; plus the model's construction and init."""

import math

import numpy as np
import pytest

import cylstm
from reference import lstm_reference, sigmoid
from testutil import check_against_reference, random_state, tol

# (T, B, D, H): odd sizes, T = 1, B = 1, B = 37, large H, long T.
SHAPES = [
    (1, 1, 1, 1),
    (5, 3, 3, 5),
    (1, 37, 3, 5),
    (9, 1, 4, 8),
    (6, 37, 7, 3),
    (12, 4, 10, 20),
    (8, 3, 16, 256),
    (2000, 2, 3, 5),
]


def _id(shape):
    return "T{}-B{}-D{}-H{}".format(*shape)


# --- the reference itself, checked by hand --------------------------------------------


def test_reference_sigmoid_is_safe_and_exact():
    z = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        s = sigmoid(z)
    expected = [0.0, 1.0 / (1.0 + math.exp(30.0)), 1.0 / (1.0 + math.e), 0.5,
                1.0 / (1.0 + math.exp(-1.0)), 1.0 / (1.0 + math.exp(-30.0)), 1.0]
    np.testing.assert_allclose(s, expected, rtol=1e-15, atol=0)


def _hand_lstm_step(a, x, h0, c0, u, b):
    """One unit (D = H = 1), one step, with math only: gate k uses a[k] x + u[k] h + b[k]."""
    z = [a[k] * x + u[k] * h0 + b[k] for k in range(4)]
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    i, f, g, o = sig(z[0]), sig(z[1]), math.tanh(z[2]), sig(z[3])
    c = f * c0 + i * g
    return o * math.tanh(c), c


def test_gate_order_by_hand(dtype):
    """Every gate gets a different weight, so a permuted gate order cannot pass."""
    a = [0.3, -0.7, 1.1, 0.45]   # w_ih column for i, f, g, o
    u = [-0.2, 0.5, 0.9, -1.3]   # w_hh
    b_ih = [0.1, 0.2, -0.3, 0.05]
    b_hh = [-0.05, 0.3, 0.1, 0.2]
    b = [p + q for p, q in zip(b_ih, b_hh)]
    x_val, h0_val, c0_val = 0.8, -0.4, 0.6
    h_exp, c_exp = _hand_lstm_step(a, x_val, h0_val, c0_val, u, b)

    r_out, r_h, r_c = lstm_reference(
        [[[x_val]]], np.array(a)[:, None], np.array(u)[:, None], b_ih, b_hh,
        [[h0_val]], [[c0_val]])
    np.testing.assert_allclose([r_out[0, 0, 0], r_h[0, 0], r_c[0, 0]],
                               [h_exp, h_exp, c_exp], rtol=1e-15)

    model = cylstm.LSTM(1, 1, dtype=dtype, seed=0)
    model.load_state_dict({
        "weight_ih_l0": np.array(a)[:, None], "weight_hh_l0": np.array(u)[:, None],
        "bias_ih_l0": np.array(b_ih), "bias_hh_l0": np.array(b_hh)})
    # inputs and parameters exactly representable? not in float32: compare to the reference
    # on the rounded data, and to the hand value at the dtype's own precision.
    out, (h_n, c_n) = check_against_reference(
        model, np.array([[[x_val]]]), (np.array([[[h0_val]]]), np.array([[[c0_val]]])))
    loose = 1e-6 if np.dtype(dtype) == np.float32 else 1e-12
    np.testing.assert_allclose([out[0, 0, 0], h_n[0, 0, 0], c_n[0, 0, 0]],
                               [h_exp, h_exp, c_exp], atol=loose)


# --- kernel vs reference --------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_forward_matches_reference(shape, bias, dtype, make_model, rng):
    T, B, D, H = shape
    model = make_model(D, H, dtype=dtype, bias=bias)
    x = rng.standard_normal((T, B, D))
    out, (h_n, c_n) = check_against_reference(model, x)
    assert out.shape == (T, B, H) and h_n.shape == (1, B, H) and c_n.shape == (1, B, H)
    # h_n is the last output; the output is not trivially zero
    np.testing.assert_array_equal(h_n[0], out[-1])
    assert np.abs(out).max() > 1e-3


@pytest.mark.parametrize("shape", [(5, 3, 3, 5), (1, 37, 3, 5), (40, 4, 16, 256),
                                   (2000, 1, 3, 5)], ids=_id)
def test_forward_with_given_state(shape, dtype, make_model, rng):
    T, B, D, H = shape
    model = make_model(D, H, dtype=dtype)
    x = rng.standard_normal((T, B, D))
    hx = random_state(rng, (1, B, H), dtype)
    out, (h_n, c_n) = check_against_reference(model, x, hx)
    # the state matters: a zero state gives a different first output
    out0, _ = model(x)
    assert np.abs(out0[0] - out[0]).max() > 1e-3


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("shape", [(5, 3, 3, 5), (1, 1, 2, 4), (7, 37, 4, 6)], ids=_id)
def test_batch_first(shape, with_state, dtype, make_model, rng):
    T, B, D, H = shape
    model = make_model(D, H, dtype=dtype, batch_first=True)
    assert model.batch_first is True
    x_bf = rng.standard_normal((B, T, D))
    hx = random_state(rng, (1, B, H), dtype) if with_state else None
    out, (h_n, c_n) = check_against_reference(model, x_bf, hx)
    assert out.shape == (B, T, H) and h_n.shape == (1, B, H) and c_n.shape == (1, B, H)
    # same weights, time-major: the same numbers, transposed
    tm = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    tm.load_state_dict(model.state_dict())
    out_tm, (h_tm, c_tm) = tm(x_bf.transpose(1, 0, 2), hx) if hx else tm(
        x_bf.transpose(1, 0, 2))
    np.testing.assert_allclose(out, out_tm.transpose(1, 0, 2), **tol(dtype))
    np.testing.assert_allclose(h_n, h_tm, **tol(dtype))
    np.testing.assert_allclose(c_n, c_tm, **tol(dtype))


@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("T,D,H", [(1, 1, 1), (6, 3, 5), (300, 8, 64)])
def test_unbatched(T, D, H, with_state, batch_first, dtype, make_model, rng):
    """(T, D) input -> output (T, H), h_n/c_n (1, H), whatever batch_first says."""
    model = make_model(D, H, dtype=dtype, batch_first=batch_first)
    x = rng.standard_normal((T, D))
    hx = random_state(rng, (1, H), dtype) if with_state else None
    out, (h_n, c_n) = check_against_reference(model, x, hx)
    assert out.shape == (T, H) and h_n.shape == (1, H) and c_n.shape == (1, H)
    # equals the B = 1 batched call
    xb = x[:, None, :] if not batch_first else x[None, :, :]
    hxb = None if hx is None else (hx[0][None], hx[1][None])
    out_b, (h_b, c_b) = model(xb, hxb) if hxb else model(xb)
    np.testing.assert_allclose(out, out_b.reshape(T, H), **tol(dtype))
    np.testing.assert_allclose(h_n, h_b.reshape(1, H), **tol(dtype))
    np.testing.assert_allclose(c_n, c_b.reshape(1, H), **tol(dtype))


def test_continuation_equals_one_long_call(dtype, tolerance, make_model, rng):
    """Feeding (h_n, c_n) back in continues the sequence."""
    T, B, D, H = 30, 4, 5, 7
    model = make_model(D, H, dtype=dtype)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    out, (h_n, c_n) = model(x)
    out1, hx1 = model(x[:11])
    out2, (h2, c2) = model(x[11:], hx1)
    np.testing.assert_allclose(np.concatenate([out1, out2]), out, **tolerance)
    np.testing.assert_allclose(h2, h_n, **tolerance)
    np.testing.assert_allclose(c2, c_n, **tolerance)


def test_batch_rows_are_independent(dtype, make_model, rng):
    """Row b of a B = 37 call equals running row b alone (no cross-talk, no shared state)."""
    T, B, D, H = 9, 37, 6, 11
    model = make_model(D, H, dtype=dtype)
    x = rng.standard_normal((T, B, D))
    hx = random_state(rng, (1, B, H), dtype)
    out, (h_n, c_n) = model(x, hx)
    for b in (0, 1, 17, 36):
        o, (h, c) = model(x[:, b:b + 1], (hx[0][:, b:b + 1], hx[1][:, b:b + 1]))
        np.testing.assert_allclose(o[:, 0], out[:, b], **tol(dtype))
        np.testing.assert_allclose(h[0, 0], h_n[0, b], **tol(dtype))
        np.testing.assert_allclose(c[0, 0], c_n[0, b], **tol(dtype))


def test_repeated_calls_are_identical_and_stateless(dtype, make_model, rng):
    model = make_model(5, 6, dtype=dtype)
    x = rng.standard_normal((10, 3, 5))
    first = model(x)
    model(rng.standard_normal((4, 2, 5)), random_state(rng, (1, 2, 6), dtype))
    second = model(x)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1][0], second[1][0])
    np.testing.assert_array_equal(first[1][1], second[1][1])


def test_saturated_gates(dtype, make_model, rng):
    """Huge pre-activations saturate sigmoid/tanh without overflow or NaN."""
    model = make_model(4, 6, dtype=dtype)
    x = rng.standard_normal((15, 3, 4)) * 1e4
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, (h_n, c_n) = check_against_reference(model, x)
    assert np.isfinite(out).all() and np.isfinite(c_n).all()
    assert np.abs(out).max() > 0.5


def test_large_weights_long_sequence(dtype, rng):
    """4x the default weights (saturating gates, larger cell state) over 500 steps."""
    D, H, T = 3, 5, 500
    model = cylstm.LSTM(D, H, dtype=dtype, seed=7)
    model.load_state_dict({k: v * 4 for k, v in model.state_dict().items()})
    x = rng.standard_normal((T, 2, D))
    out, (h_n, c_n) = check_against_reference(model, x)
    assert np.abs(c_n).max() > 1.0


def test_nan_propagates_in_its_row_only(dtype, make_model, rng):
    """torch semantics: a NaN input poisons its own batch row from that step on, no other."""
    T, B, D, H = 6, 3, 4, 5
    model = make_model(D, H, dtype=dtype)
    x = rng.standard_normal((T, B, D))
    clean, _ = model(x)
    x[2, 1, 0] = np.nan
    out, (h_n, c_n) = model(x)
    assert np.isnan(out[2:, 1]).all() and np.isnan(h_n[0, 1]).all()
    assert np.isnan(c_n[0, 1]).all()
    assert not np.isnan(out[:2]).any()
    assert not np.isnan(out[:, [0, 2]]).any()
    np.testing.assert_allclose(out[:, [0, 2]], clean[:, [0, 2]], **tol(dtype))


# --- construction and init -------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_parameters_shapes_dtypes_and_attributes(bias, dtype):
    D, H = 3, 5
    model = cylstm.LSTM(D, H, bias=bias, batch_first=True, dtype=dtype, seed=1)
    assert (model.input_size, model.hidden_size) == (D, H)
    assert model.bias is bias and model.batch_first is True
    assert np.dtype(model.dtype) == np.dtype(dtype)
    expected = {"weight_ih_l0": (4 * H, D), "weight_hh_l0": (4 * H, H)}
    if bias:
        expected.update(bias_ih_l0=(4 * H,), bias_hh_l0=(4 * H,))
    for name, shape in expected.items():
        w = getattr(model, name)
        assert isinstance(w, np.ndarray) and w.shape == shape and w.dtype == np.dtype(dtype)
    if not bias:
        assert not hasattr(model, "bias_ih_l0") and not hasattr(model, "bias_hh_l0")
    assert list(model.state_dict()) == list(expected)


def test_defaults():
    model = cylstm.LSTM(4, 6)
    assert model.bias is True and model.batch_first is False
    assert np.dtype(model.dtype) == np.float32
    assert model.weight_ih_l0.dtype == np.float32
    out, (h_n, c_n) = model(np.zeros((2, 1, 4)))
    assert out.dtype == np.float32 and out.shape == (2, 1, 6)


def test_init_distribution(dtype):
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, torch's default."""
    D, H = 48, 64
    k = 1.0 / math.sqrt(H)
    model = cylstm.LSTM(D, H, dtype=dtype, seed=3)
    for name, w in model.state_dict().items():
        assert np.abs(w).max() <= k, name
        assert w.min() < -0.95 * k and w.max() > 0.95 * k, name  # fills the interval
        assert abs(float(w.mean())) < 0.1 * k, name
        assert abs(float(w.std()) - k / math.sqrt(3)) < 0.1 * k, name  # uniform's std
        assert len(np.unique(w)) > 0.9 * w.size, name  # not constant / repeated
    # weights and biases are not copies of each other
    sd = model.state_dict()
    assert not np.array_equal(sd["bias_ih_l0"], sd["bias_hh_l0"])


def test_seed_reproducible(dtype):
    a = cylstm.LSTM(3, 5, dtype=dtype, seed=42).state_dict()
    b = cylstm.LSTM(3, 5, dtype=dtype, seed=42).state_dict()
    c = cylstm.LSTM(3, 5, dtype=dtype, seed=43).state_dict()
    d = cylstm.LSTM(3, 5, dtype=dtype).state_dict()
    e = cylstm.LSTM(3, 5, dtype=dtype).state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name]), name
        assert not np.array_equal(d[name], e[name]), name  # seed=None: fresh randomness


def test_integer_like_sizes_accepted():
    model = cylstm.LSTM(np.int64(3), np.int32(5), seed=0)
    assert model.weight_ih_l0.shape == (20, 3) and model.weight_hh_l0.shape == (20, 5)
    out, _ = model(np.ones((2, 1, 3)))
    assert out.shape == (2, 1, 5) and np.abs(out).max() > 0


def test_dtype_objects_accepted():
    for spec, expected in [(np.dtype(np.float32), np.float32),
                           (np.dtype(np.float64), np.float64), (np.float64, np.float64)]:
        model = cylstm.LSTM(2, 3, dtype=spec, seed=0)
        assert model.weight_hh_l0.dtype == expected
        assert model(np.ones((1, 1, 2)))[0].dtype == expected


def test_version():
    import importlib.metadata

    assert isinstance(cylstm.__version__, str)
    assert cylstm.__version__ == importlib.metadata.version("cylstm")
    assert cylstm.__version__[0].isdigit() and "." in cylstm.__version__
