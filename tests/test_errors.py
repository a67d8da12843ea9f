"""Bad input raises ValueError or TypeError whose message names the argument and, where there is
one, the expected and the actual shape / size / dtype. Never a crash, never a silent broadcast."""

import re

import numpy as np
import pytest

import cylstm

ERRORS = (ValueError, TypeError)
T, B, D, H = 4, 3, 7, 5
X_NAME = r"\b(x|input)\b"
H0_NAME = r"\bh0\b|\bh_0\b|hx\[0\]"
C0_NAME = r"\bc0\b|\bc_0\b|hx\[1\]"


def _numbers(msg):
    return [int(n) for n in re.findall(r"\d+", msg)]


def _contains_run(msg, seq):
    """The integers of `seq` appear consecutively in msg, whatever the formatting
    ("(1, 3, 5)", "1x3x5", "[1, 3, 5]", "expected 5, got 6" for a single number...)."""
    nums, seq = _numbers(msg), list(seq)
    return any(nums[i:i + len(seq)] == seq for i in range(len(nums) - len(seq) + 1))


def check_error(fn, name, *runs, words=()):
    """fn() raises ValueError/TypeError naming `name` (a regex); every integer run in `runs`
    (expected / actual shape) and every word in `words` appears in the message."""
    with pytest.raises(ERRORS, match=name) as info:
        fn()
    msg = str(info.value)
    for run in runs:
        assert _contains_run(msg, run), (run, msg)
    for w in words:
        assert w in msg, (w, msg)
    return msg


@pytest.fixture
def model():
    return cylstm.LSTM(D, H, seed=0)


def _hx(shape_h=(1, B, H), shape_c=(1, B, H)):
    return np.zeros(shape_h), np.zeros(shape_c)


# --- x -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_wrong_feature_size(batch_first):
    m = cylstm.LSTM(D, H, batch_first=batch_first, seed=0)
    check_error(lambda: m(np.zeros((T, B, 11))), X_NAME, [D], [11])
    check_error(lambda: m(np.zeros((T, 11))), X_NAME, [D], [11])       # unbatched
    check_error(lambda: m(np.zeros((T, B, 1))), X_NAME, [D], [1])      # would broadcast


@pytest.mark.parametrize("shape", [(D,), (2, T, B, D), (1, 1, 1, 1, D)])
def test_wrong_ndim(model, shape):
    msg = check_error(lambda: model(np.zeros(shape)), X_NAME)
    assert _contains_run(msg, shape) or _contains_run(msg, [len(shape)]), msg


def test_scalar_and_none_input(model):
    check_error(lambda: model(np.float64(1.0)), X_NAME)
    check_error(lambda: model(None), X_NAME)


@pytest.mark.parametrize("bad", [
    np.full((T, B, D), "0.5"),                      # numeric-looking strings: still text
    np.full((T, B, D), "a"),
    np.full((T, B, D), None, dtype=object),         # would silently become NaN
    np.full((T, B, D), object(), dtype=object),
    [[["a"] * D] * B] * T,
    [[[None] * D] * B] * T,
], ids=["numeric-str", "str", "object-None", "object-instance", "list-of-str",
        "list-of-None"])
def test_non_numeric_x(model, bad):
    check_error(lambda: model(bad), X_NAME)


def test_ragged_x(model):
    with pytest.raises(ERRORS):
        model([[[0.0] * D] * B, [[0.0] * (D - 1)] * B])


def test_complex_x(model):
    x = np.zeros((T, B, D), dtype=np.complex128)   # even with zero imaginary part
    check_error(lambda: model(x), X_NAME, words=["complex"])
    check_error(lambda: model(x.astype(np.complex64)), X_NAME, words=["complex"])


# --- hx ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    (1, B + 1, H),      # wrong batch
    (1, B, H + 1),      # wrong hidden
    (2, B, H),          # num_layers * directions != 1
    (1, 1, H),          # would broadcast over the batch
    (B, H),             # 2-D state for batched input
    (H,),
    (1, B, 1),          # would broadcast over hidden units
])
def test_wrong_h0_c0_shapes(model, bad):
    x = np.zeros((T, B, D))
    check_error(lambda: model(x, _hx(shape_h=bad)), H0_NAME, [1, B, H], bad)
    check_error(lambda: model(x, _hx(shape_c=bad)), C0_NAME, [1, B, H], bad)


def test_hx_is_not_batch_first():
    m = cylstm.LSTM(D, H, batch_first=True, seed=0)
    x = np.zeros((B, T, D))
    m(x, _hx())                                      # (1, B, H) is right even batch_first
    check_error(lambda: m(x, _hx(shape_h=(B, 1, H))), H0_NAME, [1, B, H], [B, 1, H])


@pytest.mark.parametrize("bad", [(1, 1, H), (H,), (2, H), (1, H + 1)])
def test_wrong_unbatched_state_shapes(model, bad):
    x = np.zeros((T, D))
    model(x, _hx((1, H), (1, H)))
    check_error(lambda: model(x, _hx((1, H), bad)), C0_NAME, [1, H], bad)
    check_error(lambda: model(x, _hx(bad, (1, H))), H0_NAME, [1, H], bad)


@pytest.mark.parametrize("bad", ["h0", "c0"])
def test_complex_or_text_state(model, bad):
    x = np.zeros((T, B, D))
    h0, c0 = _hx()
    name = H0_NAME if bad == "h0" else C0_NAME
    for v in (np.zeros((1, B, H), np.complex128), np.full((1, B, H), "0")):
        hx = (v, c0) if bad == "h0" else (h0, v)
        check_error(lambda: model(x, hx), name)


def test_hx_not_a_pair(model):
    x = np.zeros((T, B, D))
    h0, c0 = _hx()
    for hx in [(h0,), (h0, c0, c0), h0, 3.0]:
        with pytest.raises(ERRORS):
            model(x, hx)
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\) of 2 arrays, got a "
                                        r"tuple of 3 items"):
        model(x, (h0, c0, c0))


def test_empty_lengths_for_an_empty_batch(model):
    output, (h_n, c_n) = model(np.zeros((T, 0, D)), lengths=[])
    assert output.shape == (T, 0, H) and h_n.shape == (1, 0, H)


def test_functional_ragged_weight_names_it():
    x = np.zeros((T, B, D))
    with pytest.raises(TypeError, match=r"weight_ih must be an array of real numbers"):
        cylstm.lstm(x, [[0.0] * D, [0.0]], np.zeros((4 * H, H)))


# --- constructor -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.float16, np.int32, np.int64, np.complex64,
                                 np.complex128, object, np.longdouble, bool])
def test_unsupported_dtype(bad):
    if np.dtype(bad) == np.float64:   # longdouble is float64 on some platforms
        pytest.skip("longdouble is float64 here")
    msg = check_error(lambda: cylstm.LSTM(D, H, dtype=bad), r"\bdtype\b")
    assert np.dtype(bad).name in msg or str(np.dtype(bad)) in msg, msg


@pytest.mark.parametrize("arg", ["input_size", "hidden_size"])
@pytest.mark.parametrize("bad", [0, -1, 2.5, 3.0, "3", None, np.float64(4.0)],
                         ids=["zero", "negative", "fraction", "float", "str", "None",
                              "np-float"])
def test_bad_sizes(arg, bad):
    kwargs = dict(input_size=D, hidden_size=H)
    kwargs[arg] = bad
    msg = check_error(lambda: cylstm.LSTM(**kwargs), rf"\b{arg}\b")
    assert repr(bad) in msg or str(bad) in msg or type(bad).__name__ in msg, msg


# --- functional ---------------------------------------------------------------------------


def _fargs(**over):
    m = cylstm.LSTM(D, H, dtype=np.float64, seed=0)
    args = dict(x=np.zeros((T, B, D)), weight_ih=m.weight_ih_l0, weight_hh=m.weight_hh_l0,
                bias_ih=m.bias_ih_l0, bias_hh=m.bias_hh_l0, h0=np.zeros((B, H)),
                c0=np.zeros((B, H)))
    args.update(over)
    return args


def test_functional_good_args_run():
    out, h_n, c_n = cylstm.lstm(**_fargs())
    assert out.shape == (T, B, H)
    np.testing.assert_allclose(h_n, out[-1])
    assert np.abs(out).max() > 0  # biases are non-zero


def test_functional_feature_mismatch():
    check_error(lambda: cylstm.lstm(**_fargs(x=np.zeros((T, B, 11)))),
                r"\b(x|input)\b|weight_ih", [D], [11])


@pytest.mark.parametrize("shape", [(D,), (2, T, B, D)])
def test_functional_x_ndim(shape):
    check_error(lambda: cylstm.lstm(**_fargs(x=np.zeros(shape))), X_NAME)


@pytest.mark.parametrize("name,bad", [
    ("weight_ih", (4 * H - 1, D)),
    ("weight_ih", (4 * H,)),
    ("weight_ih", (D, 4 * H)),
    ("weight_hh", (4 * H, H + 1)),
    ("weight_hh", (4 * H, 1)),
    ("weight_hh", (4 * H,)),
    ("bias_ih", (4 * H + 1,)),
    ("bias_ih", (1,)),
    ("bias_hh", (1, 4 * H)),
    ("h0", (B + 1, H)),
    ("h0", (H,)),
    ("h0", (1, B, H)),
    ("c0", (B, H - 1)),
    ("c0", (1, H)),
])
def test_functional_wrong_shapes(name, bad):
    pattern = rf"\b{name}\b"
    if name in ("weight_ih", "weight_hh"):
        pattern = r"\bweight_(ih|hh)\b"   # inconsistent pair: either may be blamed
    check_error(lambda: cylstm.lstm(**_fargs(**{name: np.zeros(bad)})), pattern, bad)


@pytest.mark.parametrize("bad", [(1, H), (2, H), (H + 1,)])
def test_functional_unbatched_state(bad):
    x = np.zeros((T, D))
    out, h_n, c_n = cylstm.lstm(**_fargs(x=x, h0=np.zeros(H), c0=np.zeros(H)))
    assert out.shape == (T, H) and h_n.shape == (H,)
    check_error(lambda: cylstm.lstm(**_fargs(x=x, h0=np.zeros(bad), c0=np.zeros(H))),
                r"\bh0\b", bad)


@pytest.mark.parametrize("name", ["x", "weight_ih", "weight_hh", "bias_ih", "h0", "c0"])
def test_functional_complex(name):
    a = _fargs()[name]
    check_error(lambda: cylstm.lstm(**_fargs(**{name: a.astype(np.complex128)})),
                rf"\b{name}\b", words=["complex"])


@pytest.mark.parametrize("name", ["x", "weight_hh", "bias_hh", "c0"])
def test_functional_non_numeric(name):
    a = _fargs()[name]
    check_error(lambda: cylstm.lstm(**_fargs(**{name: np.full(a.shape, "1")})),
                rf"\b{name}\b")
    check_error(lambda: cylstm.lstm(**_fargs(**{name: np.full(a.shape, None, object)})),
                rf"\b{name}\b")


@pytest.mark.parametrize("option", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("value", ["false", None, 2, 0.5])
def test_flags_refuse_non_booleans(option, value):
    with pytest.raises(TypeError, match=option):
        cylstm.LSTM(3, 4, **{option: value})
