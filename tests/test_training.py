"""The training API: `model.forward_train(x, hx, lengths)` returns the forward results and a
`backward(grad_output, grad_state=None)` giving the gradients of

    L = sum(output * grad_output) + sum(h_n * grad_h_n) + sum(c_n * grad_c_n)

with respect to x, h0, c0 and every parameter.

Checked against central finite differences of the model's own float64 forward pass for every
combination of the options (layers, bidirectional, projection, lengths with zero or carry
padding, batch_first, unbatched, bias), against torch autograd (packed sequences included) in
float32 and float64, for its bookkeeping (weights untouched, a second backward, weights or
arrays changed between the two calls, shapes, dtypes, errors), and by training a tiny model
with plain SGD."""

import copy
import itertools

import numpy as np
import pytest

import cylstm
from gradcheck import (assert_gradients_close, numeric_gradients, state_zeros,
                       torch_gradients)
from modelutil import output_shape, random_hx, random_input, state_shapes

T, B, D, H, P = 5, 2, 3, 4, 2
LENGTHS = np.array([3, 1, 5])  # batch of 3 when lengths are used: a middle, a 1 and a T
# torch warns that its oneDNN path has no projections and falls back: harmless here
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
ERRORS = (ValueError, TypeError)


def _model(layers=1, bidirectional=False, proj=0, batch_first=False, padding="zeros",
           bias=True, dtype=np.float64, seed=0, input_size=D, hidden_size=H):
    return cylstm.LSTM(input_size, hidden_size, layers, bias=bias, batch_first=batch_first,
                       bidirectional=bidirectional, proj_size=proj, padding=padding,
                       dtype=dtype, seed=seed)


def _upstream(rng, model, steps, batch):
    """Random (grad_output, (grad_h_n, grad_c_n)) ~ N(0, 1), float64, in the model's shapes
    (batch=None: unbatched)."""
    grad_output = rng.standard_normal(output_shape(model, steps, batch))
    h_shape, c_shape = state_shapes(model, batch)
    return grad_output, (rng.standard_normal(h_shape), rng.standard_normal(c_shape))


def _time_major(model, a, unbatched=False):
    """A (T, B, ...) view of an array laid out as the model's input or output."""
    if unbatched:
        return a[:, None]
    return a.transpose(1, 0, 2) if model.batch_first else a


def _forward_train(model, x, hx=None, lengths=None):
    """forward_train with only the arguments given (hx and lengths left out when None)."""
    kwargs = {}
    if hx is not None:
        kwargs["hx"] = hx
    if lengths is not None:
        kwargs["lengths"] = lengths
    return model.forward_train(x, **kwargs)


def _gradients(model, x, hx=None, lengths=None, grad_output=None, grad_state=None):
    """forward_train then backward; checks the structure of what comes back and returns
    ({"x", "h0", "c0", *parameter names}: gradient, (output, h_n, c_n))."""
    output, (h_n, c_n), backward = _forward_train(model, x, hx, lengths)
    result = backward(grad_output) if grad_state is None else backward(grad_output,
                                                                        grad_state)
    assert isinstance(result, tuple) and len(result) == 3, type(result)
    grad_x, grad_state0, grads = result
    assert isinstance(grad_state0, tuple) and len(grad_state0) == 2, type(grad_state0)
    grad_h0, grad_c0 = grad_state0
    assert isinstance(grads, dict), type(grads)
    params = model.state_dict()
    assert list(grads) == list(params), (list(grads), list(params))
    x_shape = np.shape(x)
    expected_shapes = {"x": x_shape, "h0": h_n.shape, "c0": c_n.shape}
    expected_shapes.update({name: value.shape for name, value in params.items()})
    everything = {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}
    for name, value in everything.items():
        assert type(value) is np.ndarray, (name, type(value))
        assert value.shape == expected_shapes[name], (name, value.shape,
                                                      expected_shapes[name])
        assert value.dtype == model.dtype, (name, value.dtype, model.dtype)
        assert np.all(np.isfinite(value)), name
    return everything, (output, h_n, c_n)


def _assert_same_forward(model, x, hx, lengths, forward):
    """forward_train's (output, h_n, c_n) equal model(x, hx, lengths): same shapes and dtype,
    values within a few ulp (ideally bit-identical)."""
    out, (h_n, c_n) = model(x, hx, lengths)
    eps = np.finfo(model.dtype).eps
    for name, ours, expected in zip(["output", "h_n", "c_n"], forward, [out, h_n, c_n]):
        assert type(ours) is np.ndarray, (name, type(ours))
        assert ours.shape == expected.shape and ours.dtype == expected.dtype, (
            name, ours.shape, expected.shape, ours.dtype, expected.dtype)
        scale = np.abs(expected).max() if expected.size else 0
        np.testing.assert_allclose(ours, expected, rtol=4 * eps, atol=4 * eps * scale,
                                   err_msg=name)


def _assert_padded_steps(model, grads, lengths):
    """Padded steps get exactly zero grad_x; bias_ih and bias_hh get equal gradients."""
    if lengths is not None:
        gx = _time_major(model, grads["x"])
        for b, length in enumerate(lengths):
            assert np.all(gx[length:, b] == 0), (b, length)
    if model.bias:
        for name in grads:
            if name.startswith("bias_ih"):
                np.testing.assert_array_equal(grads[name], grads[name.replace("_ih", "_hh")],
                                              err_msg=name)


def _scaled_close(actual, expected, rtol, err_msg=""):
    """assert_allclose with rtol and atol = rtol * max|expected| (entries far below the
    array's scale are judged against that scale)."""
    expected = np.asarray(expected, np.float64)
    scale = np.abs(expected).max() if expected.size else 0
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol,
                               atol=rtol * scale, err_msg=err_msg)


# --- finite differences: every option combination, float64 --------------------------------

# layout: time-major, batch_first, unbatched;  lengths: none, zero padding, carry padding
FD_COMBOS = [c for c in itertools.product([1, 2], [False, True], [0, P], ["tm", "bf", "unb"],
                                          ["none", "zeros", "carry"])
             if not (c[3] == "unb" and c[4] != "none")]


def _fd_id(c):
    layers, bidir, proj, layout, lmode = c
    return f"L{layers}-{'bi' if bidir else 'uni'}-p{proj}-{layout}-{lmode}"


def _check_finite_differences(model, x, hx, lengths, rng, with_state=True, max_entries=None,
                              atol=1e-9):
    """forward_train + backward on random upstream gradients against central differences of
    model(...) (float64): norm-wise relative error below 1e-6 for x, h0, c0 and every
    parameter; the forward results equal model(...); padded steps get zero grad_x."""
    unbatched = np.ndim(x) == 2
    batch = None if unbatched else np.shape(_time_major(model, x))[1]
    steps = np.shape(_time_major(model, x, unbatched))[0]
    grad_output, grad_state = _upstream(rng, model, steps, batch)
    if not with_state:
        grad_state = None
    before = {k: v.copy() for k, v in model.state_dict().items()}
    analytic, forward = _gradients(model, x, hx, lengths, grad_output, grad_state)
    _assert_same_forward(model, x, hx, lengths, forward)
    numeric = numeric_gradients(model, x, hx, lengths, grad_output, grad_state,
                                max_entries=max_entries, rng=rng)
    for name, value in model.state_dict().items():  # the harness restored every entry
        np.testing.assert_array_equal(value, before[name])
    assert_gradients_close(analytic, numeric, rtol=1e-6, atol=atol)
    _assert_padded_steps(model, analytic, lengths)
    return analytic


@pytest.mark.parametrize("combo", FD_COMBOS, ids=_fd_id)
def test_matches_finite_differences(combo):
    layers, bidir, proj, layout, lmode = combo
    rng = np.random.default_rng(len(_fd_id(combo)) + 10 * layers + proj)
    model = _model(layers, bidir, proj, batch_first=layout == "bf",
                   padding="carry" if lmode == "carry" else "zeros", seed=layers * 7 + proj)
    lengths = None if lmode == "none" else LENGTHS
    batch = None if layout == "unb" else (B if lengths is None else len(LENGTHS))
    x = random_input(rng, model, T, batch)
    hx = random_hx(rng, model, batch)
    # the stacked bidirectional ones perturb a random 24 entries of each larger array
    _check_finite_differences(model, x, hx, lengths, rng,
                              max_entries=24 if layers == 2 and bidir else None)


@pytest.mark.parametrize("layers,bidir,proj,layout,lmode", [
    (1, False, 0, "tm", "none"), (2, True, P, "bf", "zeros"), (2, True, 0, "tm", "carry"),
    (1, True, P, "unb", "none")])
def test_matches_finite_differences_without_bias(layers, bidir, proj, layout, lmode):
    rng = np.random.default_rng(layers + proj)
    model = _model(layers, bidir, proj, batch_first=layout == "bf", bias=False,
                   padding="carry" if lmode == "carry" else "zeros", seed=3)
    lengths = None if lmode == "none" else LENGTHS
    batch = None if layout == "unb" else (B if lengths is None else len(LENGTHS))
    grads = _check_finite_differences(model, random_input(rng, model, T, batch),
                                      random_hx(rng, model, batch), lengths, rng)
    assert not any(name.startswith("bias") for name in grads)


@pytest.mark.parametrize("steps,batch", [(1, 1), (1, 3), (6, 1)])
@pytest.mark.parametrize("bidir,proj", [(False, 0), (True, P)])
def test_finite_differences_one_step_one_row(steps, batch, bidir, proj):
    rng = np.random.default_rng(steps * 10 + batch)
    model = _model(2, bidir, proj, seed=5)
    x = random_input(rng, model, steps, batch)
    hx = random_hx(rng, model, batch)
    grad_output, grad_state = _upstream(rng, model, steps, batch)
    analytic, forward = _gradients(model, x, hx, None, grad_output, grad_state)
    _assert_same_forward(model, x, hx, None, forward)
    numeric = numeric_gradients(model, x, hx, None, grad_output, grad_state)
    assert_gradients_close(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize("lmode", ["none", "zeros", "carry"])
def test_finite_differences_without_hx_and_grad_state(lmode):
    """hx=None (zeros) still gives grad_h0 and grad_c0; grad_state=None means zeros."""
    rng = np.random.default_rng(11)
    model = _model(2, True, P, padding="carry" if lmode == "carry" else "zeros", seed=6)
    lengths = None if lmode == "none" else LENGTHS
    batch = B if lengths is None else len(LENGTHS)
    x = random_input(rng, model, T, batch)
    grads = _check_finite_differences(model, x, None, lengths, rng, with_state=False,
                                      max_entries=30)
    # the same as passing zeros explicitly
    grad_output, _ = _upstream(np.random.default_rng(0), model, T, batch)
    zeros = state_zeros(model, x)
    implicit, _ = _gradients(model, x, None, lengths, grad_output)
    explicit, _ = _gradients(model, x, zeros, lengths, grad_output,
                             tuple(np.zeros(s) for s in state_shapes(model, batch)))
    for name in implicit:
        _scaled_close(implicit[name], explicit[name], 1e-13, name)
    assert set(grads) == set(implicit)


def test_large_values_finite_differences():
    """Weights and inputs large enough to saturate some gates (sigmoid' and tanh' tiny): the
    gradient is still right where it is small."""
    rng = np.random.default_rng(12)
    model = _model(1, True, P, seed=7)
    model.load_state_dict({k: 4 * v for k, v in model.state_dict().items()})
    x = 3 * random_input(rng, model, T, B)
    hx = random_hx(rng, model, B, scale=2.0)
    # Large activations make the loss large, and central differences of a large loss
    # carry more rounding (it differed by 3e-9 between -O3 and -O0 builds).
    _check_finite_differences(model, x, hx, None, rng, atol=1e-8)


@pytest.mark.parametrize("lengths", [None, np.array([30, 1, 17, 30, 4, 25, 30, 9, 12, 2])])
def test_finite_differences_over_several_weight_gradient_chunks(lengths):
    """The weight gradients are one gemm per chunk of (t, b) rows of [x | h_prev | 1] (256
    rows here: 300 rows, so two chunks); each reversed row starts its own h0 pairing."""
    rng = np.random.default_rng(13)
    model = _model(1, True, P, seed=8, input_size=150)
    x = random_input(rng, model, 30, 10)
    _check_finite_differences(model, x, random_hx(rng, model, 10), lengths, rng,
                              max_entries=24)


# --- lengths: what padded steps and carried outputs do -------------------------------------


@pytest.mark.parametrize("layers,bidir,proj,batch_first", [
    (1, False, 0, False), (2, True, P, False), (2, True, 0, True)])
def test_padded_grad_output_is_ignored_with_zero_padding(layers, bidir, proj, batch_first,
                                                         dtype):
    """With padding="zeros" the padded outputs are constants (zeros): grad_output there has
    no effect, and padded steps of x get exactly zero gradient."""
    rng = np.random.default_rng(13)
    model = _model(layers, bidir, proj, batch_first, dtype=dtype, seed=8)
    x = random_input(rng, model, T, len(LENGTHS))
    grad_output, grad_state = _upstream(rng, model, T, len(LENGTHS))
    masked = grad_output.copy()
    masked_tm = _time_major(model, masked)
    for b, length in enumerate(LENGTHS):
        masked_tm[length:, b] = 0
    full, _ = _gradients(model, x, None, LENGTHS, grad_output, grad_state)
    only_valid, _ = _gradients(model, x, None, LENGTHS, masked, grad_state)
    rtol = 16 * np.finfo(dtype).eps
    for name in full:
        _scaled_close(full[name], only_valid[name], rtol, name)
    _assert_padded_steps(model, full, LENGTHS)


@pytest.mark.parametrize("bidir", [False, True])
def test_carried_outputs_pass_their_gradient_to_the_last_valid_step(bidir, dtype):
    """With padding="carry" the padded forward outputs are copies of the last valid one: a
    gradient on them equals the same gradient summed onto the last valid step. The reverse
    half stays zero at padded steps, so gradient there has no effect."""
    rng = np.random.default_rng(14)
    model = _model(2, bidir, P, padding="carry", dtype=dtype, seed=9)
    width = P  # the forward half's columns
    x = random_input(rng, model, T, len(LENGTHS))
    grad_output = rng.standard_normal(output_shape(model, T, len(LENGTHS)))
    moved = grad_output.copy()
    for b, length in enumerate(LENGTHS):
        moved[length - 1, b, :width] += grad_output[length:, b, :width].sum(axis=0)
        moved[length:, b] = 0
    carried, _ = _gradients(model, x, None, LENGTHS, grad_output)
    summed, _ = _gradients(model, x, None, LENGTHS, moved)
    rtol = 64 * np.finfo(dtype).eps
    for name in carried:
        _scaled_close(carried[name], summed[name], rtol, name)
    # and the carried gradient matters: the zero-padding model gives something else
    zeros_model = _model(2, bidir, P, padding="zeros", dtype=dtype, seed=9)
    plain, _ = _gradients(zeros_model, x, None, LENGTHS, grad_output)
    assert not np.allclose(plain["weight_hh_l0"], carried["weight_hh_l0"], rtol=1e-3)
    _assert_padded_steps(model, carried, LENGTHS)


def test_full_lengths_equal_no_lengths(dtype):
    rng = np.random.default_rng(15)
    for padding in ("zeros", "carry"):
        model = _model(2, True, P, padding=padding, dtype=dtype, seed=10)
        x = random_input(rng, model, T, B)
        hx = random_hx(rng, model, B)
        grad_output, grad_state = _upstream(rng, model, T, B)
        with_lengths, _ = _gradients(model, x, hx, [T] * B, grad_output, grad_state)
        without, _ = _gradients(model, x, hx, None, grad_output, grad_state)
        for name in without:
            _scaled_close(with_lengths[name], without[name], 16 * np.finfo(dtype).eps, name)


# --- float32 against float64, no torch needed ------------------------------------------------


@pytest.mark.parametrize("layers,bidir,proj,batch_first,lmode", [
    (1, False, 0, False, "none"), (2, True, P, False, "zeros"), (2, True, P, True, "carry")])
def test_float32_gradients_close_to_float64(layers, bidir, proj, batch_first, lmode):
    rng = np.random.default_rng(16)
    padding = "carry" if lmode == "carry" else "zeros"
    m32 = _model(layers, bidir, proj, batch_first, padding, dtype=np.float32, seed=11,
                 hidden_size=8)
    m64 = _model(layers, bidir, proj, batch_first, padding, dtype=np.float64, seed=11,
                 hidden_size=8)
    m64.load_state_dict(m32.state_dict())  # the same (float32-representable) weights
    lengths = None if lmode == "none" else LENGTHS
    batch = len(LENGTHS)
    x = random_input(rng, m32, 9, batch, np.float32)
    hx = random_hx(rng, m32, batch, np.float32)
    grad_output, grad_state = _upstream(rng, m32, 9, batch)
    grad_output = grad_output.astype(np.float32)
    grad_state = tuple(a.astype(np.float32) for a in grad_state)
    g32, _ = _gradients(m32, x, hx, lengths, grad_output, grad_state)
    g64, _ = _gradients(m64, x, hx, lengths, grad_output, grad_state)
    for name in g64:
        _scaled_close(g32[name], g64[name], 1e-4, name)


# --- torch autograd -----------------------------------------------------------------------

# (layers, bidirectional, proj, layout, lengths mode, with hx, bias, T, B, D, H)
TORCH_CASES = [
    (1, False, 0, "tm", "none", False, True, 7, 5, 4, 6),
    (2, True, 3, "tm", "none", True, True, 7, 5, 4, 6),
    (2, True, 3, "bf", "none", True, True, 7, 5, 4, 6),
    (2, True, 3, "tm", "zeros", True, True, 7, 5, 4, 6),
    (2, True, 3, "bf", "zeros", False, True, 7, 5, 4, 6),
    (3, True, 2, "tm", "zeros", True, True, 6, 4, 3, 5),
    (2, False, 3, "bf", "carry", True, True, 7, 5, 4, 6),
    (2, True, 0, "tm", "carry", True, True, 7, 5, 4, 6),
    (2, True, 0, "tm", "none", True, False, 7, 5, 4, 6),
    (1, True, 3, "unb", "none", True, True, 7, None, 4, 6),
    (2, False, 0, "unb", "none", False, True, 1, None, 4, 6),
    (1, False, 0, "tm", "none", True, True, 1, 1, 4, 6),
    (2, True, 8, "bf", "zeros", True, True, 20, 9, 16, 32),
]


def _torch_id(c):
    layers, bidir, proj, layout, lmode, with_hx, bias, t, b, d, h = c
    return (f"L{layers}-{'bi' if bidir else 'uni'}-p{proj}-{layout}-{lmode}"
            f"-{'hx' if with_hx else 'nohx'}-{'bias' if bias else 'nobias'}-T{t}B{b}D{d}H{h}")


def _torch_lengths(rng, batch, steps):
    """(B,) lengths in [1, T], unsorted, containing 1 and T."""
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[:2] = 1, steps
    rng.shuffle(lengths)
    return lengths


@pytest.mark.parametrize("case", TORCH_CASES, ids=_torch_id)
def test_matches_torch_autograd(case, dtype):
    pytest.importorskip("torch")
    layers, bidir, proj, layout, lmode, with_hx, bias, steps, batch, d, h = case
    rng = np.random.default_rng(len(_torch_id(case)))
    model = cylstm.LSTM(d, h, layers, bias=bias, batch_first=layout == "bf",
                        bidirectional=bidir, proj_size=proj,
                        padding="carry" if lmode == "carry" else "zeros", dtype=dtype,
                        seed=layers + proj + steps)
    lengths = None if lmode == "none" else _torch_lengths(rng, batch, steps)
    x = random_input(rng, model, steps, batch, dtype)
    hx = random_hx(rng, model, batch, dtype) if with_hx else None
    grad_output, grad_state = _upstream(rng, model, steps, batch)
    theirs, _ = torch_gradients(model, x, hx, lengths, grad_output, grad_state)
    ours, _ = _gradients(model, x, hx, lengths, grad_output, grad_state)
    rtol = 1e-9 if np.dtype(dtype) == np.float64 else 5e-4
    assert set(ours) == set(theirs)
    for name in theirs:
        # big enough to mean something, or exactly zero (W_hh at T = 1 from h0 = 0): then
        # ours must be exactly zero too (the tolerance scales with the expected values)
        assert np.abs(theirs[name]).max() > 1e-3 or not theirs[name].any(), name
        _scaled_close(ours[name], theirs[name], rtol, name)
    _assert_padded_steps(model, ours, lengths)


def test_matches_torch_without_grad_state(dtype):
    """grad_state left out: torch's L has no h_n/c_n term."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    model = _model(2, True, P, batch_first=True, dtype=dtype, seed=12)
    x = random_input(rng, model, T, 3, dtype)
    grad_output = rng.standard_normal(output_shape(model, T, 3))
    theirs, _ = torch_gradients(model, x, None, LENGTHS, grad_output)
    ours, _ = _gradients(model, x, None, LENGTHS, grad_output)
    rtol = 1e-9 if np.dtype(dtype) == np.float64 else 5e-4
    for name in theirs:
        _scaled_close(ours[name], theirs[name], rtol, name)


def test_torch_harness_matches_finite_differences():
    """The torch side of these tests computes the same L (and the carry emulation is right):
    torch's gradients agree with finite differences of cylstm's forward pass."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    model = _model(2, True, P, batch_first=True, padding="carry", seed=13)
    x = random_input(rng, model, T, 3)
    hx = random_hx(rng, model, 3)
    grad_output, grad_state = _upstream(rng, model, T, 3)
    theirs, forward = torch_gradients(model, x, hx, LENGTHS, grad_output, grad_state)
    out, (h_n, c_n) = model(x, hx, LENGTHS)
    for a, b in zip((out, h_n, c_n), forward):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    numeric = numeric_gradients(model, x, hx, LENGTHS, grad_output, grad_state,
                                max_entries=20, rng=rng)
    assert_gradients_close(theirs, numeric, rtol=1e-6)


# --- bookkeeping ----------------------------------------------------------------------------


def _snapshot(model):
    return {name: np.array(getattr(model, name), copy=True) for name in model.state_dict()}


def _assert_weights_equal(model, snapshot):
    for name, value in snapshot.items():
        current = getattr(model, name)
        assert current.dtype == value.dtype and current.shape == value.shape, name
        np.testing.assert_array_equal(current, value, err_msg=name)


def _bookkeeping_case(dtype, padding="zeros"):
    rng = np.random.default_rng(19)
    model = _model(2, True, P, padding=padding, dtype=dtype, seed=14)
    x = random_input(rng, model, T, 3, dtype)
    hx = random_hx(rng, model, 3, dtype)
    grad_output, grad_state = _upstream(rng, model, T, 3)
    return model, x, hx, grad_output, grad_state


def test_weights_inputs_and_upstream_gradients_unchanged(dtype):
    model, x, hx, grad_output, grad_state = _bookkeeping_case(dtype, "carry")
    lengths = LENGTHS.copy()
    weights = _snapshot(model)
    arrays = [x, *hx, lengths, grad_output, *grad_state]
    kept = [a.copy() for a in arrays]
    reference = model(x, hx, lengths)
    output, (h_n, c_n), backward = model.forward_train(x, hx, lengths)
    _assert_weights_equal(model, weights)
    backward(grad_output, grad_state)
    _assert_weights_equal(model, weights)
    for a, k in zip(arrays, kept):
        np.testing.assert_array_equal(a, k)
    after = model(x, hx, lengths)
    for a, b in zip((reference[0], *reference[1]), (after[0], *after[1])):
        np.testing.assert_array_equal(a, b)


def test_second_backward_raises_or_is_right(dtype):
    """A second call either raises RuntimeError saying why, or gives the right gradients for
    its own grad_output (never the first call's, never stale buffers)."""
    model, x, hx, grad_output, grad_state = _bookkeeping_case(dtype)
    rng = np.random.default_rng(20)
    other_output, other_state = _upstream(rng, model, T, 3)
    _, _, backward = model.forward_train(x, hx, LENGTHS)
    backward(grad_output, grad_state)
    try:
        second = backward(other_output, other_state)
    except RuntimeError as exc:
        assert "backward" in str(exc).lower(), str(exc)
        with pytest.raises(RuntimeError):  # and keeps refusing
            backward(other_output, other_state)
        return
    expected, _ = _gradients(model, x, hx, LENGTHS, other_output, other_state)
    grad_x, (grad_h0, grad_c0), grads = second
    got = {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}
    for name in expected:
        _scaled_close(got[name], expected[name], 16 * np.finfo(dtype).eps, name)


@pytest.mark.parametrize("how", ["in-place", "load_state_dict", "assign"])
def test_weights_changed_between_forward_and_backward(how, dtype):
    """The gradients belong to the weights forward_train ran with."""
    model, x, hx, grad_output, grad_state = _bookkeeping_case(dtype, "carry")
    untouched = copy.deepcopy(model)
    expected, _ = _gradients(untouched, x, hx, LENGTHS, grad_output, grad_state)
    _, _, backward = model.forward_train(x, hx, LENGTHS)
    if how == "in-place":
        for name in model.state_dict():
            value = getattr(model, name)
            value *= -2
            value += 0.5
    elif how == "load_state_dict":
        model.load_state_dict({k: 3 * v + 1 for k, v in model.state_dict().items()})
    else:
        for name, value in model.state_dict().items():
            setattr(model, name, np.zeros_like(value))
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    got = {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}
    for name in expected:
        _scaled_close(got[name], expected[name], 16 * np.finfo(dtype).eps, name)


def test_arrays_changed_between_forward_and_backward(dtype):
    """Overwriting the returned output, h_n, c_n, or the x and hx that were passed in, between
    forward_train and backward does not change the gradients: backward uses what the forward
    pass computed and read, not the caller's arrays."""
    model, x, hx, grad_output, grad_state = _bookkeeping_case(dtype)
    expected, _ = _gradients(model, x, hx, LENGTHS, grad_output, grad_state)
    x, hx = x.copy(), tuple(a.copy() for a in hx)
    output, (h_n, c_n), backward = model.forward_train(x, hx, LENGTHS)
    for a in (output, h_n, c_n, x, *hx):
        a[...] = 7.0
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    got = {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}
    for name in expected:
        _scaled_close(got[name], expected[name], 16 * np.finfo(dtype).eps, name)


def test_interleaved_forward_train_calls(dtype):
    """Two pending backwards (e.g. two batches) each give their own gradients."""
    model, x, hx, grad_output, grad_state = _bookkeeping_case(dtype)
    rng = np.random.default_rng(21)
    x2 = random_input(rng, model, T, 3, dtype)
    expected1, _ = _gradients(model, x, hx, None, grad_output, grad_state)
    expected2, _ = _gradients(model, x2, None, LENGTHS, grad_output)
    _, _, backward1 = model.forward_train(x, hx)
    _, _, backward2 = model.forward_train(x2, lengths=LENGTHS)
    got2 = backward2(grad_output)
    got1 = backward1(grad_output, grad_state)
    for expected, (grad_x, (grad_h0, grad_c0), grads) in ((expected1, got1),
                                                          (expected2, got2)):
        got = {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}
        for name in expected:
            _scaled_close(got[name], expected[name], 16 * np.finfo(dtype).eps, name)


@pytest.mark.parametrize("layout", ["tm", "bf", "unb"])
@pytest.mark.parametrize("steps,batch", [(1, 1), (1, 4), (6, 1), (4, 3)])
def test_shapes_and_dtypes(layout, steps, batch, dtype):
    """Every output of both calls: ndarray, the model dtype, x's shape and layout for grad_x,
    h_n's and c_n's for grad_h0 and grad_c0, each parameter's for its gradient; also for a
    float64 x given to a float32 model, and with hx left out."""
    rng = np.random.default_rng(22)
    model = _model(2, True, P, batch_first=layout == "bf", dtype=dtype, seed=15)
    b = None if layout == "unb" else batch
    x = random_input(rng, model, steps, b)  # float64 whatever the model dtype
    output, (h_n, c_n), backward = model.forward_train(x)
    assert output.shape == output_shape(model, steps, b)
    assert (h_n.shape, c_n.shape) == state_shapes(model, b)
    for a in (output, h_n, c_n):
        assert type(a) is np.ndarray and a.dtype == np.dtype(dtype)
    assert callable(backward)
    grad_output, grad_state = _upstream(rng, model, steps, b)
    grads, _ = _gradients(model, x, None, None, grad_output, grad_state)  # checks shapes
    assert grads["x"].shape == x.shape
    assert np.abs(grads["x"]).max() > 0


def test_empty_sequence_and_batch(dtype):
    """T = 0: the state passes straight through (grad_h0 = grad_h_n, grad_c0 = grad_c_n),
    parameters get zero gradient. B = 0: empty gradients and zero parameter gradients."""
    rng = np.random.default_rng(23)
    model = _model(2, True, P, dtype=dtype, seed=16)
    hx = random_hx(rng, model, 3, dtype)
    grad_output, grad_state = _upstream(rng, model, 0, 3)
    grads, (output, h_n, c_n) = _gradients(model, np.zeros((0, 3, D)), hx, None, grad_output,
                                           grad_state)
    assert output.shape == (0, 3, 2 * P)
    np.testing.assert_array_equal(h_n, hx[0])
    np.testing.assert_array_equal(c_n, hx[1])
    np.testing.assert_array_equal(grads["h0"], grad_state[0].astype(dtype))
    np.testing.assert_array_equal(grads["c0"], grad_state[1].astype(dtype))
    for name in model.state_dict():
        assert np.all(grads[name] == 0), name
    grad_output, grad_state = _upstream(rng, model, T, 0)
    grads, _ = _gradients(model, np.zeros((T, 0, D)), None, None, grad_output, grad_state)
    assert grads["x"].shape == (T, 0, D)
    for name in model.state_dict():
        assert np.all(grads[name] == 0), name


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_bad_grad_output_shape(batch_first):
    model = _model(2, True, P, batch_first=batch_first, seed=17)
    x = np.zeros((3, T, D) if batch_first else (T, 3, D))
    good = output_shape(model, T, 3)
    bad_shapes = [good[:-1] + (P,), good[:-1] + (2 * P + 1,), (good[1], good[0], good[2]),
                  good[1:], good + (1,), (T + 1, 3, 2 * P) if not batch_first
                  else (3, T + 1, 2 * P), ()]
    for bad in bad_shapes:
        _, _, backward = model.forward_train(x)
        with pytest.raises(ValueError, match="grad_output"):
            backward(np.zeros(bad))


def test_bad_grad_output_shape_unbatched():
    model = _model(1, False, 0, seed=18)
    _, _, backward = model.forward_train(np.zeros((T, D)))
    with pytest.raises(ValueError, match="grad_output"):
        backward(np.zeros((T, 1, H)))
    _, _, backward = model.forward_train(np.zeros((T, D)))
    with pytest.raises(ValueError, match="grad_output"):
        backward(np.zeros((T, H + 1)))


def test_bad_grad_state():
    model = _model(2, True, P, seed=19)
    x = np.zeros((T, 3, D))
    grad_output = np.zeros(output_shape(model, T, 3))
    h_shape, c_shape = state_shapes(model, 3)
    cases = [
        (np.zeros(c_shape), np.zeros(c_shape)),          # grad_h_n with H, not P, features
        (np.zeros(h_shape), np.zeros(h_shape)),          # grad_c_n with P, not H, features
        (np.zeros((2, 3, P)), np.zeros(c_shape)),        # one layer's worth
        (np.zeros(h_shape), np.zeros((4, 2, H))),        # wrong batch
        (np.zeros(h_shape[1:]), np.zeros(c_shape[1:])),  # no layer axis
    ]
    for bad in cases:
        _, _, backward = model.forward_train(x)
        with pytest.raises(ValueError, match="grad_state"):
            backward(grad_output, bad)
    for bad in [np.zeros(h_shape), (np.zeros(h_shape),),
                (np.zeros(h_shape), np.zeros(c_shape), np.zeros(c_shape))]:
        _, _, backward = model.forward_train(x)
        with pytest.raises(ERRORS, match="grad_state"):
            backward(grad_output, bad)


def test_bad_call_then_good_call():
    """A backward refused for a bad argument has not been used up: a valid call then gives
    the right gradients (or, if the implementation refuses any second call, says so)."""
    rng = np.random.default_rng(24)
    model = _model(1, True, P, seed=20)
    x = random_input(rng, model, T, B)
    grad_output, grad_state = _upstream(rng, model, T, B)
    expected, _ = _gradients(model, x, None, None, grad_output, grad_state)
    _, _, backward = model.forward_train(x)
    with pytest.raises(ValueError):
        backward(grad_output[:, :, :P])
    try:
        grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    except RuntimeError as exc:
        pytest.fail(f"a refused bad call used up backward: {exc}")
    got = {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}
    for name in expected:
        _scaled_close(got[name], expected[name], 1e-13, name)


# --- it trains --------------------------------------------------------------------------


def test_sgd_learns_to_echo_the_previous_input(dtype):
    """A 1-in, 8-cell LSTM with a linear read-out (in NumPy, its gradient by hand) learns
    y_t = x_{t-1} with 200 steps of plain SGD: the mean squared error falls at least 5x
    (seeded: it falls about 25x)."""
    steps, batch, hidden, lr = 10, 16, 8, 0.3
    model = cylstm.LSTM(1, hidden, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, 1))
    target = np.zeros((steps, batch))
    target[1:] = x[:-1, :, 0]
    w, b = np.zeros(hidden), 0.0
    n = steps * batch
    losses = []
    for _ in range(200):
        output, _, backward = model.forward_train(x)
        output = output.astype(np.float64)
        error = output @ w + b - target  # (T, B)
        losses.append(np.mean(error ** 2))
        grad_error = 2 * error / n
        grad_w = np.einsum("tbh,tb->h", output, grad_error)
        grad_b = grad_error.sum()
        _, _, grads = backward(grad_error[:, :, None] * w)
        for name, grad in grads.items():
            getattr(model, name)[...] -= lr * grad
        w -= lr * grad_w
        b -= lr * grad_b
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])
    assert losses[-1] < min(losses[:100]), "still improving in the second half"


@pytest.mark.parametrize("padding", ["zeros", "carry"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_values_do_not_reach_the_gradients(padding, bidirectional):
    """NaN and inf are common padding: past each row's length x (and, with zero
    padding, grad_output, whose padded outputs are constants) may hold anything.
    As with torch's packed sequences, the results must not depend on it."""
    rng = np.random.default_rng(7)
    T, B, D, H = 6, 4, 3, 5
    model = cylstm.LSTM(D, H, 2, bidirectional=bidirectional, padding=padding,
                        dtype=np.float64, seed=0)
    lengths = np.array([6, 2, 4, 1])
    x = rng.standard_normal((T, B, D))
    grad_output = rng.standard_normal((T, B, model.num_directions * H))
    poisoned_x, poisoned_grad = x.copy(), grad_output.copy()
    for row, length in enumerate(lengths):
        poisoned_x[length:, row] = [np.nan, np.inf, -np.inf]
        if padding == "zeros":
            poisoned_grad[length:, row] = np.nan
    clean_out, clean_state, backward = model.forward_train(x, lengths=lengths)
    clean = backward(grad_output)
    out, state, backward = model.forward_train(poisoned_x, lengths=lengths)
    grad_x, (grad_h0, grad_c0), grads = backward(poisoned_grad)
    np.testing.assert_array_equal(out, clean_out)
    np.testing.assert_array_equal(state[0], clean_state[0])
    np.testing.assert_array_equal(grad_h0, clean[1][0])
    np.testing.assert_array_equal(grad_c0, clean[1][1])
    for name, value in grads.items():
        np.testing.assert_array_equal(value, clean[2][name], err_msg=name)
    for row, length in enumerate(lengths):  # valid steps as before, padded steps zero
        np.testing.assert_array_equal(grad_x[:length, row], clean[0][:length, row])
        np.testing.assert_array_equal(grad_x[length:, row], 0)
