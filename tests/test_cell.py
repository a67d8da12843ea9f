"""cylstm.LSTMCell: torch.nn.LSTMCell's one step, over the layer kernel.

Against the float64 NumPy reference step (batched, unbatched, no state, no bias), torch's
LSTMCell both ways (from_torch, to_torch) and a one-step cylstm.LSTM; its training step
against torch autograd and finite differences; parameters, state dicts, pickles, and the
errors."""

import copy
import pickle

import numpy as np
import pytest

import cylstm
from reference import lstm_step
from testutil import tol

D, H, B = 3, 5, 4


def _reference(cell, x, hx=None):
    params = {k: v.astype(np.float64) for k, v in cell.state_dict().items()}
    x = np.asarray(x, np.float64)
    shape = x.shape[:-1] + (H,)
    h, c = (np.zeros(shape), np.zeros(shape)) if hx is None else (
        np.asarray(a, np.float64) for a in hx)
    zero = np.zeros(4 * H)
    return lstm_step(x, h, c, params["weight_ih"], params["weight_hh"],
                     params.get("bias_ih", zero), params.get("bias_hh", zero))


@pytest.mark.parametrize("batch", [None, 1, B])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
def test_one_step_against_the_reference(dtype, batch, bias, with_state):
    cell = cylstm.LSTMCell(D, H, bias, dtype=dtype, seed=1)
    rng = np.random.default_rng(2)
    lead = () if batch is None else (batch,)
    x = rng.standard_normal(lead + (D,)).astype(dtype)
    hx = tuple(rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2)) \
        if with_state else None
    h, c = cell(x, hx)
    want_h, want_c = _reference(cell, x, hx)
    assert h.shape == c.shape == lead + (H,) and h.dtype == c.dtype == dtype
    np.testing.assert_allclose(h, want_h, **tol(dtype))
    np.testing.assert_allclose(c, want_c, **tol(dtype))


def test_a_sequence_of_steps_is_the_lstm():
    cell = cylstm.LSTMCell(D, H, dtype=np.float64, seed=3)
    model = cylstm.LSTM(D, H, dtype=np.float64)
    model.load_state_dict({f"{name}_l0": value for name, value in cell.state_dict().items()})
    x = np.random.default_rng(4).standard_normal((7, B, D))
    h = c = np.zeros((B, H))
    outputs = []
    for x_t in x:
        h, c = cell(x_t, (h, c))
        outputs.append(h)
    output, (h_n, c_n) = model(x)
    np.testing.assert_allclose(np.stack(outputs), output, **tol(np.float64))
    np.testing.assert_allclose(c, c_n[0], **tol(np.float64))


def test_inputs_of_any_layout_and_nothing_modified():
    cell = cylstm.LSTMCell(D, H, dtype=np.float64, seed=5)
    rng = np.random.default_rng(6)
    x = np.asfortranarray(rng.standard_normal((B, D)))
    hx = (rng.standard_normal((2 * B, H))[::2], rng.standard_normal((B, H)).tolist())
    kept = (x.copy(), hx[0].copy())
    h, c = cell(x, hx)
    want_h, want_c = _reference(cell, x, hx)
    np.testing.assert_allclose(h, want_h, **tol(np.float64))
    np.testing.assert_array_equal(x, kept[0])
    np.testing.assert_array_equal(hx[0], kept[1])
    h.fill(0)  # results are the caller's own arrays
    np.testing.assert_allclose(cell(x, hx)[0], want_h, **tol(np.float64))


# --- torch --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_from_and_to_torch(dtype, bias):
    torch = pytest.importorskip("torch")
    torch.manual_seed(7)
    module = torch.nn.LSTMCell(D, H, bias=bias, dtype=getattr(torch, np.dtype(dtype).name))
    cell = cylstm.LSTMCell.from_torch(module)
    assert cell.dtype == dtype and cell.bias == bias
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, D)).astype(dtype)
    hx = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    with torch.no_grad():
        want = module(torch.from_numpy(x), tuple(torch.from_numpy(a) for a in hx))
    for got, expected in zip(cell(x, hx), want):
        np.testing.assert_allclose(got, expected.numpy(), **tol(dtype))
    back = cell.to_torch()
    assert isinstance(back, torch.nn.LSTMCell)
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name].numpy(), value.numpy())
    from_dict = cylstm.LSTMCell.from_torch({k: v.numpy() for k, v in module.state_dict().items()})
    np.testing.assert_array_equal(from_dict.weight_hh, cell.weight_hh)


def test_the_wrong_torch_module_says_which_class_takes_it():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"got a LSTMCell \(a cell runs one step: use "
                                        r"cylstm.LSTMCell.from_torch\)"):
        cylstm.LSTM.from_torch(torch.nn.LSTMCell(D, H))
    with pytest.raises(TypeError, match=r"source must be a torch.nn.LSTMCell or its state "
                                        r"dict, got a LSTM \(a sequence model: use "
                                        r"cylstm.LSTM.from_torch\)"):
        cylstm.LSTMCell.from_torch(torch.nn.LSTM(D, H))
    with pytest.raises(TypeError, match=r"weight_ih, weight_hh"):
        cylstm.LSTMCell.from_torch({"weight_ih_l0": np.zeros((4 * H, D))})
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih'\] must have shape "
                                         r"\(4 \* hidden_size, input_size\)"):
        cylstm.LSTMCell.from_torch({"weight_ih": np.zeros((7, D))})


# --- training ----------------------------------------------------------------------------------


def _gradients(cell, x, hx, grad_h, grad_c):
    h, c, backward = cell.forward_train(x, hx)
    grad_x, (grad_h0, grad_c0), grads = backward(grad_h, grad_c)
    return h, c, {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}


@pytest.mark.parametrize("batch", [None, 1, B])
def test_training_step_against_torch_autograd(dtype, batch):
    torch = pytest.importorskip("torch")
    cell = cylstm.LSTMCell(D, H, dtype=dtype, seed=9)
    module = cell.to_torch()
    rng = np.random.default_rng(10)
    lead = () if batch is None else (batch,)
    x = rng.standard_normal(lead + (D,)).astype(dtype)
    hx = tuple(rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2))
    grad_h, grad_c = (rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2))
    h, c, grads = _gradients(cell, x, hx, grad_h, grad_c)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, *hx))
    h_t, c_t = module(tx, (th, tc))
    ((h_t * torch.from_numpy(grad_h)).sum() + (c_t * torch.from_numpy(grad_c)).sum()).backward()
    expected = {"x": tx.grad, "h0": th.grad, "c0": tc.grad,
                **{name: p.grad for name, p in module.named_parameters()}}
    np.testing.assert_allclose(h, h_t.detach().numpy(), **tol(dtype))
    for name, value in expected.items():
        assert grads[name].shape == tuple(value.shape), name
        np.testing.assert_allclose(grads[name], value.numpy(), err_msg=name, **tol(dtype))


def test_training_step_against_finite_differences():
    cell = cylstm.LSTMCell(D, H, dtype=np.float64, seed=11)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((B, D))
    hx = [rng.standard_normal((B, H)) for _ in range(2)]
    grad_h, grad_c = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    _, _, grads = _gradients(cell, x, hx, grad_h, grad_c)
    arrays = {"x": x, "h0": hx[0], "c0": hx[1],
              **{name: getattr(cell, name) for name in cell.state_dict()}}
    eps = 1e-6
    for name, array in arrays.items():
        for index in list(np.ndindex(array.shape))[::3]:
            old = array[index]
            results = []
            for value in (old + eps, old - eps):
                array[index] = value
                h, c = cell(x, hx)
                results.append(np.sum(h * grad_h) + np.sum(c * grad_c))
            array[index] = old
            numeric = (results[0] - results[1]) / (2 * eps)
            assert abs(grads[name][index] - numeric) < 1e-7 * (1 + abs(numeric)), (name, index)


def test_backward_runs_once_and_checks_its_gradients():
    cell = cylstm.LSTMCell(D, H, dtype=np.float64, seed=13)
    _, _, backward = cell.forward_train(np.ones((B, D)))
    with pytest.raises(ValueError, match=r"grad_h_1 must have shape \(4, 5\), got \(5,\)"):
        backward(np.ones(H))
    backward(np.ones((B, H)))
    with pytest.raises(RuntimeError, match="once per forward_train"):
        backward(np.ones((B, H)))


# --- parameters, state dicts, pickles ---------------------------------------------------------


def test_parameters_are_checked_on_assignment_and_the_config_is_fixed():
    cell = cylstm.LSTMCell(D, H, seed=0)
    assert {name: value.shape for name, value in cell.state_dict().items()} == {
        "weight_ih": (4 * H, D), "weight_hh": (4 * H, H), "bias_ih": (4 * H,),
        "bias_hh": (4 * H,)}
    cell.weight_hh = np.zeros((4 * H, H), np.float64).tolist()
    assert cell.weight_hh.dtype == np.float32 and not cell.weight_hh.any()
    with pytest.raises(ValueError, match=r"weight_ih must have shape \(20, 3\), got \(20, 4\)"):
        cell.weight_ih = np.zeros((4 * H, 4))
    with pytest.raises(AttributeError, match="hidden_size is fixed"):
        cell.hidden_size = 3
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del cell.bias_ih
    assert repr(cylstm.LSTMCell(D, H, bias=False, dtype=np.float64)) == \
        "LSTMCell(3, 5, bias=False, dtype=float64)"


def test_state_dict_round_trip_and_errors():
    cell, other = cylstm.LSTMCell(D, H, seed=0), cylstm.LSTMCell(D, H, seed=1)
    other.load_state_dict(cell.state_dict())
    np.testing.assert_array_equal(other.weight_ih, cell.weight_ih)
    before = other.state_dict()
    with pytest.raises(ValueError, match=r"missing \['bias_hh'\], unexpected \['bias_x'\]"):
        other.load_state_dict({**{k: v for k, v in before.items() if k != "bias_hh"},
                               "bias_x": np.zeros(4 * H)})
    with pytest.raises(ValueError, match=r"state_dict\['bias_hh'\] must have shape"):
        other.load_state_dict({**before, "bias_hh": np.zeros(3)})
    for name, value in other.state_dict().items():  # nothing changed
        np.testing.assert_array_equal(value, before[name])


def test_pickle_and_deepcopy():
    cell = cylstm.LSTMCell(D, H, bias=False, dtype=np.float64, seed=14)
    x = np.ones((B, D))
    for clone in (pickle.loads(pickle.dumps(cell)), copy.deepcopy(cell)):
        assert repr(clone) == repr(cell)
        np.testing.assert_array_equal(clone(x)[0], cell(x)[0])
        assert clone.weight_hh.ctypes.data % 64 == 0
    bad = cylstm.LSTMCell.__new__(cylstm.LSTMCell)
    with pytest.raises(TypeError, match="LSTMCell pickle state"):
        bad.__setstate__({"config": {"input_size": 3}})


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, hx, error, message", [
    (np.ones((B, 4)), None, ValueError, r"x must be \(B, 3\) or unbatched \(3,\), got shape "
                                        r"\(4, 4\)"),
    (np.ones((2, B, D)), None, ValueError, r"x must be \(B, 3\)"),
    (np.ones((B, D)), np.ones((B, H)), TypeError, r"hx must be a tuple \(h0, c0\)"),
    (np.ones((B, D)), (np.ones((B, H)), np.ones((B + 1, H))), ValueError,
     r"hx\[1\] \(c_0\) must have shape \(4, 5\), got \(5, 5\)"),
    (np.ones(D), (np.ones((1, H)), np.ones((1, H))), ValueError,
     r"hx\[0\] \(h_0\) must have shape \(5,\), got \(1, 5\)"),
    (np.ones((B, D), complex), None, TypeError, r"x must be real"),
])
def test_bad_input_is_refused_by_name(x, hx, error, message):
    with pytest.raises(error, match=message):
        cylstm.LSTMCell(D, H)(x, hx)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_size=0), ValueError, "input_size must be a positive int"),
    (dict(hidden_size=2.5), TypeError, "hidden_size must be a positive int"),
    (dict(bias="yes"), TypeError, "bias must be True or False"),
    (dict(dtype=np.int32), TypeError, "dtype must be float32 or float64"),
])
def test_bad_configuration_is_refused_by_name(kwargs, error, message):
    arguments = {"input_size": D, "hidden_size": H, **kwargs}
    with pytest.raises(error, match=message):
        cylstm.LSTMCell(**arguments)
