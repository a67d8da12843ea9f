"""Equivalence with torch.nn.LSTM (skipped only when torch is not installed; CI installs it).
Weights go both ways: torch state dict -> cylstm.load_state_dict, cylstm.state_dict() ->
torch.load_state_dict."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cylstm  # noqa: E402
from reference import reference_module  # noqa: E402
from testutil import tol  # noqa: E402

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _torch_lstm(D, H, dtype, bias=True, batch_first=False, seed=0):
    torch.manual_seed(seed)
    return torch.nn.LSTM(D, H, bias=bias, batch_first=batch_first,
                         dtype=TORCH_DTYPE[np.dtype(dtype)])


def _torch_run(tl, x, hx=None):
    with torch.no_grad():
        tx = torch.from_numpy(np.ascontiguousarray(x))
        if hx is None:
            out, (h, c) = tl(tx)
        else:
            out, (h, c) = tl(tx, tuple(torch.from_numpy(np.ascontiguousarray(a))
                                       for a in hx))
    return out.numpy(), (h.numpy(), c.numpy())


def _compare(ours, theirs, dtype):
    names = ["output", "h_n", "c_n"]
    for name, a, b in zip(names, [ours[0], *ours[1]], [theirs[0], *theirs[1]]):
        assert a.shape == b.shape, (name, a.shape, b.shape)
        assert a.dtype == b.dtype == np.dtype(dtype), (name, a.dtype, b.dtype)
        # both sides round; twice the single-sided tolerance
        t = tol(dtype)
        np.testing.assert_allclose(a, b, atol=2 * t["atol"], rtol=2 * t["rtol"],
                                   err_msg=name)


def _torch_state_numpy(tl):
    return {k: v.detach().numpy() for k, v in tl.state_dict().items()}


CASES = [
    dict(T=7, B=3, D=3, H=5, bias=True, batch_first=False),
    dict(T=1, B=1, D=1, H=1, bias=True, batch_first=False),
    dict(T=12, B=37, D=6, H=9, bias=False, batch_first=False),
    dict(T=9, B=4, D=5, H=7, bias=True, batch_first=True),
    dict(T=5, B=2, D=4, H=3, bias=False, batch_first=True),
    dict(T=40, B=2, D=16, H=256, bias=True, batch_first=False),
    dict(T=600, B=2, D=3, H=8, bias=True, batch_first=False),
]


def _cid(c):
    return "T{T}-B{B}-D{D}-H{H}-{b}-{f}".format(
        b="bias" if c["bias"] else "nobias", f="bf" if c["batch_first"] else "tm", **c)


@pytest.mark.parametrize("with_state", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_matches_torch(case, with_state, dtype):
    T, B, D, H = case["T"], case["B"], case["D"], case["H"]
    tl = _torch_lstm(D, H, dtype, case["bias"], case["batch_first"], seed=T + H)
    model = cylstm.LSTM(D, H, bias=case["bias"], batch_first=case["batch_first"],
                        dtype=dtype, seed=1)
    model.load_state_dict(_torch_state_numpy(tl))
    rng = np.random.default_rng(T * 100 + B)
    x = rng.standard_normal((B, T, D) if case["batch_first"] else (T, B, D)).astype(dtype)
    hx = None
    if with_state:
        hx = tuple((rng.standard_normal((1, B, H)) * 0.5).astype(dtype) for _ in range(2))
    ours = model(x, hx) if hx else model(x)
    theirs = _torch_run(tl, x, hx)
    _compare(ours, theirs, dtype)
    assert np.abs(theirs[0]).max() > 1e-3


@pytest.mark.parametrize("with_state", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_matches_torch(batch_first, with_state, dtype):
    T, D, H = 11, 4, 6
    tl = _torch_lstm(D, H, dtype, batch_first=batch_first, seed=3)
    model = cylstm.LSTM(D, H, batch_first=batch_first, dtype=dtype)
    model.load_state_dict(_torch_state_numpy(tl))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, D)).astype(dtype)
    hx = tuple(rng.standard_normal((1, H)).astype(dtype) for _ in range(2)) \
        if with_state else None
    ours = model(x, hx) if hx else model(x)
    theirs = _torch_run(tl, x, hx)
    assert ours[0].shape == (T, H) and ours[1][0].shape == (1, H)
    _compare(ours, theirs, dtype)


def test_reference_matches_torch_float64():
    """The truth the other tests use is itself torch's LSTM, to float64 rounding."""
    for bias, batch_first in [(True, False), (False, True)]:
        tl = _torch_lstm(5, 7, np.float64, bias, batch_first, seed=11)
        rng = np.random.default_rng(1)
        T, B = 9, 4
        x = rng.standard_normal((B, T, 5) if batch_first else (T, B, 5))
        hx = tuple(rng.standard_normal((1, B, 7)) for _ in range(2))
        ref = reference_module(_torch_state_numpy(tl), x, hx, batch_first=batch_first)
        theirs = _torch_run(tl, x, hx)
        np.testing.assert_allclose(ref[0], theirs[0], atol=1e-13, rtol=1e-13)
        np.testing.assert_allclose(ref[1][0], theirs[1][0], atol=1e-13, rtol=1e-13)
        np.testing.assert_allclose(ref[1][1], theirs[1][1], atol=1e-13, rtol=1e-13)


def test_state_dict_names_and_order_match_torch():
    for bias in (True, False):
        tl = torch.nn.LSTM(3, 4, bias=bias)
        model = cylstm.LSTM(3, 4, bias=bias, seed=0)
        assert list(model.state_dict()) == list(tl.state_dict())
        for k, v in tl.state_dict().items():
            assert model.state_dict()[k].shape == tuple(v.shape), k


def test_load_torch_tensors_directly(dtype):
    """load_state_dict accepts whatever np.asarray takes, torch tensors included."""
    tl = _torch_lstm(3, 5, dtype, seed=2)
    model = cylstm.LSTM(3, 5, dtype=dtype, seed=0)
    model.load_state_dict(tl.state_dict())
    for k, v in tl.state_dict().items():
        np.testing.assert_array_equal(getattr(model, k), v.numpy())
        assert getattr(model, k).dtype == np.dtype(dtype)
    x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(dtype)
    _compare(model(x), _torch_run(tl, x), dtype)


def test_float32_torch_into_float64_model():
    tl = _torch_lstm(3, 5, np.float32, seed=4)
    model = cylstm.LSTM(3, 5, dtype=np.float64, seed=0)
    model.load_state_dict(_torch_state_numpy(tl))
    assert model.weight_ih_l0.dtype == np.float64
    tl64 = _torch_lstm(3, 5, np.float64, seed=0)
    tl64.load_state_dict({k: v.double() for k, v in tl.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    _compare(model(x), _torch_run(tl64, x), np.float64)


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_loads_into_torch(bias, dtype):
    """cylstm's own init, exported: torch computes the same thing with it."""
    D, H = 4, 6
    model = cylstm.LSTM(D, H, bias=bias, dtype=dtype, seed=8)
    tl = _torch_lstm(D, H, dtype, bias=bias, seed=0)
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    for k, v in tl.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), getattr(model, k))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 3, D)).astype(dtype)
    hx = tuple((rng.standard_normal((1, 3, H)) * 0.5).astype(dtype) for _ in range(2))
    _compare(model(x, hx), _torch_run(tl, x, hx), dtype)


def test_init_range_matches_torch():
    """Same U(-1/sqrt(H), 1/sqrt(H)) family as torch (not the same numbers)."""
    H = 64
    ours = cylstm.LSTM(16, H, seed=0).state_dict()
    theirs = _torch_state_numpy(torch.nn.LSTM(16, H))
    for k in theirs:
        for sd in (ours, theirs):
            assert np.abs(sd[k]).max() <= 1 / np.sqrt(H)
            assert np.abs(sd[k]).max() > 0.95 / np.sqrt(H)
