"""The kernel's two layouts. A batch of fewer than _lstm.COLUMN_LAYOUT_MIN_BATCH rows runs in
the row layout (a batch row per row of the gates, the gate math vectorised along it); a larger
one in the column layout (a batch row per column, see cylstm/_lstm.pyx). Every option is
checked at batch sizes on both sides of the switch: the forward pass against the float64
reference (with lengths, as the running rows shrink to one), the training gradients
against central differences, and a batch against its rows run one at a time."""

import itertools

import numpy as np
import pytest

import cylstm
from cylstm import _lstm
from gradcheck import assert_gradients_close, numeric_gradients
from modelutil import check_model, output_shape, random_hx, random_input, state_shapes

SWITCH = _lstm.COLUMN_LAYOUT_MIN_BATCH
BATCHES = [SWITCH - 1, SWITCH, 2 * SWITCH + 3]
T, D, H, P = 6, 3, 5, 2
# torch warns that its oneDNN path has no projections and falls back: harmless here
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

# (layers, bidirectional, proj_size, lengths: None / "zeros" / "carry")
OPTIONS = list(itertools.product([1, 2], [False, True], [0, P], [None, "zeros", "carry"]))


def _option_id(option):
    layers, bidirectional, proj, lengths = option
    return f"L{layers}-{'bi' if bidirectional else 'uni'}-p{proj}-{lengths or 'full'}"


def _model(option, dtype=np.float64, seed=0):
    layers, bidirectional, proj, lengths = option
    return cylstm.LSTM(D, H, layers, bidirectional=bidirectional, proj_size=proj,
                       padding=lengths or "zeros", dtype=dtype, seed=seed)


def _lengths(rng, batch, option):
    """None, or lengths with most rows short, so the running rows shrink to one."""
    if option[3] is None:
        return None
    lengths = rng.integers(1, T // 2 + 1, size=batch)
    lengths[:2] = [T, 1][:batch]
    rng.shuffle(lengths)
    return lengths


def test_switch_is_between_one_row_and_a_batch():
    assert 2 <= SWITCH <= 64


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("option", OPTIONS, ids=_option_id)
def test_forward_matches_reference(option, batch, dtype):
    rng = np.random.default_rng(batch + 100 * len(_option_id(option)))
    model = _model(option, dtype, seed=batch)
    x = random_input(rng, model, T, batch, dtype)
    check_model(model, x, random_hx(rng, model, batch, dtype), _lengths(rng, batch, option))


@pytest.mark.parametrize("option", OPTIONS, ids=_option_id)
def test_batch_equals_its_rows_alone(option):
    """Each row of a column-layout batch against the same row run alone (batch 1: the row
    layout), within float64 rounding."""
    batch = SWITCH + 1
    rng = np.random.default_rng(len(_option_id(option)))
    model = _model(option)
    x = random_input(rng, model, T, batch)
    h0, c0 = random_hx(rng, model, batch)
    lengths = _lengths(rng, batch, option)
    out, (h_n, c_n) = model(x, (h0, c0), lengths)
    for b in range(batch):
        steps = T if lengths is None else lengths[b]
        alone, (h_b, c_b) = model(x[:steps, b:b + 1], (h0[:, b:b + 1], c0[:, b:b + 1]))
        np.testing.assert_allclose(out[:steps, b:b + 1], alone, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h_n[:, b:b + 1], h_b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c_n[:, b:b + 1], c_b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [SWITCH - 1, SWITCH + 1])
@pytest.mark.parametrize("option", OPTIONS, ids=_option_id)
def test_training_gradients_match_finite_differences(option, batch):
    """forward_train keeps the activations in either layout; backward's gradients agree with
    central differences of the float64 model (12 random entries of each array)."""
    rng = np.random.default_rng(batch * 1000 + len(_option_id(option)))
    model = _model(option, seed=1)
    x = random_input(rng, model, T, batch)
    hx = random_hx(rng, model, batch)
    lengths = _lengths(rng, batch, option)
    grad_output = rng.standard_normal(output_shape(model, T, batch))
    h_shape, c_shape = state_shapes(model, batch)
    grad_state = (rng.standard_normal(h_shape), rng.standard_normal(c_shape))

    output, (h_n, c_n), backward = model.forward_train(x, hx, lengths)
    expected = model(x, hx, lengths)
    for ours, want in zip([output, h_n, c_n], [expected[0], *expected[1]]):
        np.testing.assert_allclose(ours, want, rtol=1e-14, atol=1e-14)
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    analytic = {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}
    numeric = numeric_gradients(model, x, hx, lengths, grad_output, grad_state,
                                max_entries=12, rng=rng)
    assert_gradients_close(analytic, numeric, rtol=1e-6, atol=1e-9)
