"""Variable-length batches (`lengths`): against the float64 reference and torch's packed
sequences; padded steps output zeros (padding="zeros") or carry the last valid output forward
(padding="carry"); final states come from each row's last valid step; the reverse direction
runs each row backwards within its own length; padded input is never read; errors."""

import itertools

import numpy as np
import pytest

import cylstm
from modelutil import (assert_results_same, assert_same, check_model, random_hx,
                       random_input, random_lengths)
from reference import reference_model
from testutil import tol

T, B, D, H, P = 7, 5, 4, 5, 3
# torch warns that its oneDNN path has no projections and falls back: harmless here
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
ERRORS = (ValueError, TypeError)


def _model(layers=2, bidirectional=True, proj=P, batch_first=False, padding="zeros",
           dtype=np.float64, seed=0, bias=True):
    return cylstm.LSTM(D, H, layers, bias=bias, batch_first=batch_first,
                       bidirectional=bidirectional, proj_size=proj, padding=padding,
                       dtype=dtype, seed=seed)


def _time_major(model, a):
    return a.transpose(1, 0, 2) if model.batch_first else a


COMBOS = list(itertools.product([1, 2], [False, True], [0, P], ["zeros", "carry"],
                                [False, True]))


def _cid(c):
    layers, bidir, proj, padding, bf = c
    return f"L{layers}-{'bi' if bidir else 'uni'}-p{proj}-{padding}-{'bf' if bf else 'tm'}"


@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("combo", COMBOS, ids=_cid)
def test_matches_reference(combo, with_hx, dtype):
    layers, bidir, proj, padding, batch_first = combo
    rng = np.random.default_rng(len(_cid(combo)) + 7 * layers)
    model = _model(layers, bidir, proj, batch_first, padding, dtype, seed=layers + proj)
    lengths = random_lengths(rng, B, T)
    assert {1, T} <= set(lengths.tolist()) and not np.all(np.diff(lengths) <= 0)
    x = random_input(rng, model, T, B)
    hx = random_hx(rng, model, B) if with_hx else None
    keep = lengths.copy()
    out, (h_n, c_n) = check_model(model, x, hx, lengths)
    np.testing.assert_array_equal(lengths, keep)

    out = _time_major(model, out)
    width = proj or H
    for b, length in enumerate(lengths):
        padded = out[length:, b]
        if padding == "zeros":
            assert np.all(padded == 0), b
        else:  # forward half repeats the last valid output exactly, reverse half is zero
            assert np.all(padded[:, :width] == out[length - 1, b, :width]), b
            assert np.all(padded[:, width:] == 0), b
    # the last layer's states: forward = its output at the row's last valid step,
    # reverse = its output at step 0
    dirs = 2 if bidir else 1
    last = (layers - 1) * dirs
    for b, length in enumerate(lengths):
        assert_same(h_n[last, b], out[length - 1, b, :width])
        if bidir:
            assert_same(h_n[last + 1, b], out[0, b, width:])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_rows_equal_their_own_unpadded_run(bidirectional, dtype):
    """Row b of a padded batch is exactly the sequence x[:lengths[b], b] run alone: the
    reverse direction starts at the row's own last step, not at T - 1."""
    rng = np.random.default_rng(1)
    model = _model(2, bidirectional, P, dtype=dtype, seed=5)
    lengths = random_lengths(rng, B, T)
    x = random_input(rng, model, T, B, dtype)
    h0, c0 = random_hx(rng, model, B, dtype)
    out, (h_n, c_n) = model(x, (h0, c0), lengths)
    for b, length in enumerate(lengths):
        o, (h, c) = model(x[:length, b], (h0[:, b], c0[:, b]))  # unbatched, no lengths
        np.testing.assert_allclose(out[:length, b], o, **tol(dtype))
        np.testing.assert_allclose(h_n[:, b], h, **tol(dtype))
        np.testing.assert_allclose(c_n[:, b], c, **tol(dtype))


@pytest.mark.parametrize("padding", ["zeros", "carry"])
def test_padded_input_is_never_read(padding, dtype):
    """Garbage (NaN, inf, huge) at padded steps changes nothing, bit for bit."""
    rng = np.random.default_rng(2)
    model = _model(2, True, P, padding=padding, dtype=dtype)
    lengths = random_lengths(rng, B, T)
    x = random_input(rng, model, T, B, dtype)
    hx = random_hx(rng, model, B, dtype)
    expected = model(x, hx, lengths)
    dirty = x.copy()
    for b, length in enumerate(lengths):
        dirty[length:, b] = rng.choice([np.nan, np.inf, -1e30], size=(T - length, D))
    assert_results_same(model(dirty, hx, lengths), expected)


@pytest.mark.parametrize("layers,bidir,proj", [(1, False, 0), (1, True, 0), (2, True, P),
                                               (3, False, 2)])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding", ["zeros", "carry"])
def test_full_lengths_equal_no_lengths_bit_for_bit(layers, bidir, proj, batch_first, padding,
                                                   dtype):
    rng = np.random.default_rng(3)
    model = _model(layers, bidir, proj, batch_first, padding, dtype)
    x = random_input(rng, model, T, B, dtype)
    hx = random_hx(rng, model, B, dtype)
    expected = model(x, hx)
    assert_results_same(model(x, hx, np.full(B, T)), expected)
    assert_results_same(model(x, hx, [T] * B), expected)


def test_carry_differs_from_zeros_only_at_padded_forward_steps(dtype):
    rng = np.random.default_rng(4)
    zeros = _model(3, True, P, padding="zeros", dtype=dtype, seed=1)
    carry = _model(3, True, P, padding="carry", dtype=dtype, seed=1)
    lengths = random_lengths(rng, B, T)
    x = random_input(rng, zeros, T, B, dtype)
    hx = random_hx(rng, zeros, B, dtype)
    oz, (hz, cz) = zeros(x, hx, lengths)
    oc, (hc, cc) = carry(x, hx, lengths)
    assert_same(hz, hc)
    assert_same(cz, cc)
    valid = np.arange(T)[:, None] < lengths[None, :]           # (T, B)
    assert_same(oz[valid], oc[valid])
    assert np.all(oz[~valid] == 0)
    assert np.all(oc[~valid][:, P:] == 0)
    for b, length in enumerate(lengths):
        for t in range(length, T):
            assert_same(oc[t, b, :P], oc[length - 1, b, :P])
    if not np.all(lengths == T):
        assert np.any(oc[~valid][:, :P] != 0)
    # without lengths nothing is padded: carry and zeros are the same model
    assert_results_same(carry(x, hx), zeros(x, hx))


def test_row_of_length_one_and_single_row(dtype):
    rng = np.random.default_rng(5)
    model = _model(2, True, P, dtype=dtype)
    for lengths in ([1], [T], [1, 1], [T, 1, T]):
        batch = len(lengths)
        check_model(model, random_input(rng, model, T, batch), random_hx(rng, model, batch),
                    np.array(lengths))


def test_empty_batch():
    model = _model(2, True, P)
    out, (h_n, c_n) = model(np.zeros((T, 0, D)), lengths=np.zeros(0, dtype=int))
    assert out.shape == (T, 0, 2 * P)
    assert h_n.shape == (4, 0, P) and c_n.shape == (4, 0, H)


@pytest.mark.parametrize("kind", ["list", "tuple", "int32", "uint8", "int64", "readonly",
                                  "strided", "torch"])
def test_lengths_any_integer_array_like(kind):
    rng = np.random.default_rng(6)
    model = _model(2, True, P, padding="carry")
    lengths = random_lengths(rng, B, T)
    x = random_input(rng, model, T, B)
    expected = model(x, lengths=lengths)
    if kind == "torch":
        torch = pytest.importorskip("torch")
        given = torch.from_numpy(lengths)
    elif kind == "list":
        given = lengths.tolist()
    elif kind == "tuple":
        given = tuple(int(v) for v in lengths)
    elif kind == "readonly":
        given = lengths.copy()
        given.flags.writeable = False
    elif kind == "strided":
        given = np.repeat(lengths, 2)[::2]
    else:
        given = lengths.astype(kind)
    assert_results_same(model(x, lengths=given), expected)


# --- torch's packed sequences ------------------------------------------------------------


@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("layers,bidir,proj,batch_first", [
    (2, True, P, False), (2, True, P, True), (3, True, 2, False), (2, False, P, True),
    (1, True, 0, False)])
def test_matches_torch_packed_sequences(layers, bidir, proj, batch_first, with_hx, dtype):
    torch = pytest.importorskip("torch")
    torch_dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
    rng = np.random.default_rng(layers * 10 + proj)
    torch.manual_seed(layers + proj)
    tl = torch.nn.LSTM(D, H, layers, bidirectional=bidir, proj_size=proj,
                       batch_first=batch_first, dtype=torch_dtype[np.dtype(dtype)])
    model = _model(layers, bidir, proj, batch_first, dtype=dtype)
    model.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    lengths = random_lengths(rng, B, T)
    x = random_input(rng, model, T, B, dtype)
    hx = random_hx(rng, model, B, dtype) if with_hx else None
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=batch_first,
        enforce_sorted=False)
    with torch.no_grad():
        if hx is None:
            t_out, (t_h, t_c) = tl(packed)
        else:
            t_out, (t_h, t_c) = tl(packed, tuple(torch.from_numpy(a) for a in hx))
    t_out, t_lengths = torch.nn.utils.rnn.pad_packed_sequence(
        t_out, batch_first=batch_first, total_length=T)
    np.testing.assert_array_equal(t_lengths.numpy(), lengths)
    out, (h_n, c_n) = model(x, hx, lengths) if hx else model(x, lengths=lengths)
    t = {k: 2 * v for k, v in tol(dtype).items()}  # both sides round
    for name, ours, theirs in [("output", out, t_out), ("h_n", h_n, t_h), ("c_n", c_n, t_c)]:
        theirs = theirs.numpy()
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
        np.testing.assert_allclose(ours, theirs, err_msg=name, **t)
    assert np.abs(t_out.numpy()).max() > 1e-2


def test_reference_matches_torch_packed_float64():
    """The reference's lengths semantics are torch's, to float64 rounding."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tl = torch.nn.LSTM(D, H, 2, bidirectional=True, proj_size=P, dtype=torch.float64)
    sd = {k: v.detach().numpy() for k, v in tl.state_dict().items()}
    rng = np.random.default_rng(7)
    lengths = random_lengths(rng, B, T)
    x = rng.standard_normal((T, B, D))
    hx = (rng.standard_normal((4, B, P)), rng.standard_normal((4, B, H)))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), enforce_sorted=False)
    with torch.no_grad():
        t_out, (t_h, t_c) = tl(packed, tuple(map(torch.from_numpy, hx)))
    t_out = torch.nn.utils.rnn.pad_packed_sequence(t_out, total_length=T)[0]
    ref = reference_model(sd, x, hx, lengths)
    for ours, theirs in [(ref[0], t_out), (ref[1][0], t_h), (ref[1][1], t_c)]:
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-13, rtol=1e-13)


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    np.full(B + 1, T), np.full(B - 1, T), np.full((B, 1), T), np.full((1, B), T),
    np.array(T), np.zeros(0, dtype=int)], ids=["B+1", "B-1", "(B,1)", "(1,B)", "scalar",
                                                "empty"])
def test_lengths_of_wrong_shape(bad):
    model = _model()
    with pytest.raises(ValueError, match="lengths") as info:
        model(np.zeros((T, B, D)), lengths=bad)
    assert str(B) in str(info.value)


@pytest.mark.parametrize("bad", [
    np.full(B, float(T)), [3.0, 2.0, 1.0, 4.0, 5.0], np.full(B, 2.5, np.float32),
    ["3"] * B, np.full(B, 1 + 0j)], ids=["float64", "float-list", "float32", "str", "complex"])
def test_lengths_not_integers(bad):
    model = _model()
    with pytest.raises(TypeError, match="lengths"):
        model(np.zeros((T, B, D)), lengths=bad)


@pytest.mark.parametrize("value", [0, -1, T + 1, 10**9])
def test_lengths_out_of_range(value):
    model = _model()
    lengths = np.full(B, T)
    lengths[2] = value
    with pytest.raises(ValueError, match="lengths") as info:
        model(np.zeros((T, B, D)), lengths=lengths)
    assert str(T) in str(info.value)


@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_checked_against_the_right_axes(batch_first):
    """With batch_first, B is axis 0 and T axis 1: lengths fit those, not the other way."""
    model = _model(batch_first=batch_first)
    x = np.zeros((B, T, D) if batch_first else (T, B, D))
    assert T > B
    model(x, lengths=np.full(B, T))   # values up to T (> B) are fine
    with pytest.raises(ValueError, match="lengths"):
        model(x, lengths=np.full(T, 1))   # one per time step is not one per row
    with pytest.raises(ValueError, match="lengths"):
        model(x, lengths=np.full(B, T + 1))


def test_lengths_with_unbatched_input():
    model = _model()
    with pytest.raises(ValueError, match="lengths"):
        model(np.zeros((T, D)), lengths=[T])
    with pytest.raises(ValueError, match="lengths"):
        model(np.zeros((T, D)), lengths=T)
