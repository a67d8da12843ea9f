"""cylstm.optim: SGD and Adam against torch.optim over several steps, hand-computed steps
without torch, clip_grad_norm, in-place updates and errors."""

import copy
import math

import numpy as np
import pytest

import cylstm
from cylstm.optim import SGD, Adam, clip_grad_norm, parameters

# Agreement with torch.optim after several steps: both sides do the same float operations
# in the same order, so only a few roundings differ.
OPTIM_TOL = {
    np.dtype(np.float32): dict(rtol=1e-6, atol=1e-6),
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-12),
}
SHAPES = {"w": (8, 3), "b": (8,), "s": ()}
STEPS = 5

SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.01),
    "all": dict(lr=0.03, momentum=0.7, weight_decay=0.05, nesterov=True),
}
ADAM_CASES = {
    "default": dict(lr=1e-3),
    "large_lr": dict(lr=0.1, betas=(0.8, 0.99), eps=1e-6),
    "weight_decay": dict(lr=1e-2, weight_decay=0.1),
}


def _random_params(rng, dtype):
    return {name: np.array(rng.standard_normal(shape), dtype) for name, shape in SHAPES.items()}


def _random_grads(rng, dtype):
    # Mixed scales, as real gradients are, so that eps and the bias corrections matter.
    return {name: np.array(rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 2), dtype)
            for name, shape in SHAPES.items()}


def _compare_with_torch(ours_class, theirs_class, options, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    params = _random_params(rng, dtype)
    tensors = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}
    ours = ours_class(params, **options)
    theirs = theirs_class(list(tensors.values()), **options)
    for _ in range(STEPS):
        grads = _random_grads(rng, dtype)
        ours.step(grads)
        for name, tensor in tensors.items():
            tensor.grad = torch.from_numpy(grads[name].copy())
        theirs.step()
        for name, tensor in tensors.items():
            expected = tensor.detach().numpy()
            assert params[name].dtype == np.dtype(dtype)
            np.testing.assert_allclose(params[name], expected, err_msg=name,
                                       **OPTIM_TOL[np.dtype(dtype)])


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    _compare_with_torch(SGD, torch.optim.SGD, SGD_CASES[case], dtype)


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    _compare_with_torch(Adam, torch.optim.Adam, ADAM_CASES[case], dtype)


# -- hand-computed steps (no torch) -----------------------------------------------------------

def test_sgd_by_hand():
    p = np.array([1.0, -2.0])
    opt = SGD({"p": p}, lr=0.1, momentum=0.5, weight_decay=0.1)
    # step 1: g = [1, 1] + 0.1 * [1, -2] = [1.1, 0.8]; buffer = g; p = [1, -2] - 0.1 * g
    opt.step({"p": np.array([1.0, 1.0])})
    np.testing.assert_allclose(p, [0.89, -2.08], rtol=0, atol=1e-15)
    # step 2: g = [0, 2] + 0.1 * p = [0.089, 1.792]; buffer = 0.5 * [1.1, 0.8] + g
    opt.step({"p": np.array([0.0, 2.0])})
    buffer = np.array([0.55 + 0.089, 0.4 + 1.792])
    np.testing.assert_allclose(p, np.array([0.89, -2.08]) - 0.1 * buffer, rtol=0, atol=1e-15)


def test_sgd_nesterov_by_hand():
    p = np.array([0.0])
    opt = SGD({"p": p}, lr=1.0, momentum=0.5, nesterov=True)
    opt.step({"p": np.array([1.0])})   # buffer 1, step g + 0.5 * buffer = 1.5
    opt.step({"p": np.array([1.0])})   # buffer 1.5, step 1 + 0.75 = 1.75
    assert p[0] == -3.25


def test_adam_by_hand():
    p = np.array([1.0, 1.0])
    opt = Adam({"p": p}, lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    # Step 1 after bias correction: m_hat = g, v_hat = g**2, so each entry moves by
    # lr * g / (|g| + eps), about lr * sign(g), whatever the gradient's size.
    opt.step({"p": np.array([3.0, -0.001])})
    np.testing.assert_allclose(p, [1 - 0.1 * 3 / (3 + 1e-8), 1 + 0.1 * 1e-3 / (1e-3 + 1e-8)],
                               rtol=0, atol=1e-15)
    # Step 2 with g = [1, 1]: m = [0.1*3*0.9 + 0.1, ...]; written out:
    before = p.copy()
    opt.step({"p": np.array([1.0, 1.0])})
    m = 0.9 * (0.1 * np.array([3.0, -0.001])) + 0.1 * 1.0
    v = 0.99 * (0.01 * np.array([9.0, 1e-6])) + 0.01 * 1.0
    expected = before - 0.1 / (1 - 0.9**2) * m / (np.sqrt(v) / math.sqrt(1 - 0.99**2) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-15, atol=1e-15)


def test_adam_weight_decay_is_l2_in_the_gradient():
    # With a zero gradient, torch's Adam weight decay still moves p (g = wd * p): step 1
    # moves each entry by lr * sign(p).
    p = np.array([2.0, -4.0])
    Adam({"p": p}, lr=0.5, weight_decay=0.1, eps=0.0).step({"p": np.zeros(2)})
    np.testing.assert_array_equal(p, [1.5, -3.5])


# -- clip_grad_norm -----------------------------------------------------------------------

def test_clip_grad_norm_by_hand():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    total = clip_grad_norm(grads, max_norm=1.0)
    assert total == 5.0
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(grads["a"], [3 * coef, 0], rtol=1e-15)
    np.testing.assert_allclose(grads["b"], [[4 * coef]], rtol=1e-15)


def test_clip_grad_norm_leaves_small_gradients():
    grads = {"a": np.array([0.3, 0.4], np.float32)}
    before = grads["a"]
    assert clip_grad_norm(grads, max_norm=1.0) == pytest.approx(0.5)
    assert grads["a"] is before
    np.testing.assert_array_equal(grads["a"], np.array([0.3, 0.4], np.float32))


def test_clip_grad_norm_list_and_empty():
    arrays = [np.array([6.0, 8.0]), np.zeros((2, 2))]
    assert clip_grad_norm(arrays, 5.0) == 10.0
    np.testing.assert_allclose(np.linalg.norm(arrays[0]), 5.0, rtol=1e-6)
    assert clip_grad_norm({}, 1.0) == 0.0


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(dtype, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    grads = _random_grads(rng, dtype)
    tensors = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
               for g in grads.values()]
    for tensor, g in zip(tensors, grads.values()):
        tensor.grad = torch.from_numpy(g.copy())
    expected_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    total = clip_grad_norm(grads, max_norm)
    assert total == pytest.approx(expected_norm, rel=OPTIM_TOL[np.dtype(dtype)]["rtol"])
    for tensor, (name, g) in zip(tensors, grads.items()):
        assert g.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g, tensor.grad.numpy(), err_msg=name,
                                   **OPTIM_TOL[np.dtype(dtype)])


def test_clip_grad_norm_nonfinite():
    grads = {"a": np.array([np.inf, 1.0])}
    with pytest.raises(ValueError, match="total norm"):
        clip_grad_norm(grads, 1.0, error_if_nonfinite=True)
    assert clip_grad_norm(grads, 1.0) == math.inf
    np.testing.assert_array_equal(grads["a"], [np.inf, 1.0])


def test_clip_grad_norm_errors():
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"a": np.ones(2)}, 0.0)
    with pytest.raises(TypeError, match="'a'"):
        clip_grad_norm({"a": [1.0, 2.0]}, 1.0)
    with pytest.raises(TypeError, match="'a'"):
        clip_grad_norm({"a": np.ones(2, int)}, 1.0)
    read_only = np.ones(2)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        clip_grad_norm({"a": read_only}, 1.0)


# -- parameters and in-place updates -----------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda m: SGD(m, lr=0.1, momentum=0.9),
    lambda m: Adam(parameters(m), lr=0.1),
])
def test_updates_the_model_in_place(make, dtype):
    model = cylstm.LSTM(2, 3, num_layers=2, dtype=dtype, seed=0)
    arrays = parameters(model)
    assert list(arrays) == list(model.state_dict())
    assert all(arrays[name] is getattr(model, name) for name in arrays)
    before = model.state_dict()
    opt = make(model)
    grads = {name: np.ones_like(value) for name, value in before.items()}
    opt.step(grads)
    for name, value in before.items():
        current = getattr(model, name)
        assert current is arrays[name]                    # same array, same dtype
        assert current.dtype == np.dtype(dtype) and current.flags.c_contiguous
        assert np.all(current < value), name              # moved against the gradient
        np.testing.assert_array_equal(grads[name], 1.0)  # gradients are not modified
    x = np.zeros((4, 1, 2), dtype)
    output, _ = model(x)                                  # still runs with the new weights
    assert np.all(np.isfinite(output))


def test_model_optimiser_follows_load_state_dict():
    # load_state_dict replaces the model's arrays; an optimiser built on the model follows.
    model = cylstm.LSTM(1, 2, dtype=np.float64, seed=0)
    opt = SGD(model, lr=1.0)
    new = {name: np.zeros_like(value) for name, value in model.state_dict().items()}
    model.load_state_dict(new)
    opt.step({name: np.ones_like(value) for name, value in new.items()})
    for name in new:
        np.testing.assert_array_equal(getattr(model, name), -1.0)


def test_extra_gradients_are_ignored_so_parts_can_be_frozen():
    frozen, trained = np.ones(2), np.ones(2)
    SGD({"trained": trained}, lr=1.0).step({"trained": np.ones(2), "frozen": np.ones(2)})
    np.testing.assert_array_equal(trained, 0.0)
    np.testing.assert_array_equal(frozen, 1.0)


def test_gradients_are_cast_to_the_parameter_dtype():
    p = np.ones(3, np.float32)
    Adam({"p": p}, lr=0.1).step({"p": [1, 2, 3]})   # ints, a list
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, 0.9, rtol=1e-6)


def test_state_dict_round_trip():
    rng = np.random.default_rng(0)
    p1, p2 = rng.standard_normal((2, 4, 3))
    a = Adam({"p": p1}, lr=0.05, weight_decay=0.01)
    b = Adam({"p": p2}, lr=0.5)
    for _ in range(3):
        a.step({"p": rng.standard_normal((4, 3))})
    state = a.state_dict()
    p2[...] = p1   # same weights, then the same state
    b.load_state_dict(copy.deepcopy(state))
    assert b.lr == 0.05 and b.weight_decay == 0.01 and b.state["p"]["step"] == 3
    g = rng.standard_normal((4, 3))
    a.step({"p": g})
    b.step({"p": g})
    np.testing.assert_array_equal(p2, p1)
    state["state"]["p"]["exp_avg"][...] = 99.0   # state_dict() returned copies
    assert not np.any(a.state["p"]["exp_avg"] == 99.0)


def test_sgd_state_dict_round_trip():
    p = np.zeros(2)
    a = SGD({"p": p}, lr=0.1, momentum=0.9)
    a.step({"p": np.ones(2)})
    b = SGD({"p": p}, lr=0.1)
    b.load_state_dict(a.state_dict())
    assert b.momentum == 0.9
    np.testing.assert_array_equal(b.state["p"]["momentum_buffer"], 1.0)


def test_lr_can_be_changed_between_steps():
    p = np.zeros(1)
    opt = SGD({"p": p}, lr=1.0)
    opt.step({"p": np.ones(1)})
    opt.lr = 0.5
    opt.step({"p": np.ones(1)})
    assert p[0] == -1.5
    assert "SGD(1 parameters, lr=0.5" in repr(opt)


# -- errors ---------------------------------------------------------------------------------

def test_missing_gradient_names_the_parameter():
    params = {"weight_ih_l0": np.zeros(2), "bias_ih_l0": np.zeros(2)}
    opt = Adam(params)
    with pytest.raises(KeyError, match="bias_ih_l0"):
        opt.step({"weight_ih_l0": np.ones(2)})
    # nothing was updated: every gradient is checked first
    np.testing.assert_array_equal(params["weight_ih_l0"], 0.0)
    assert opt.state["weight_ih_l0"] == {}


def test_gradient_shape_mismatch():
    opt = SGD({"w": np.zeros((2, 3))}, lr=0.1)
    with pytest.raises(ValueError, match=r"'w' has shape \(3, 2\).*\(2, 3\)"):
        opt.step({"w": np.zeros((3, 2))})
    with pytest.raises(TypeError, match="'w'"):
        opt.step({"w": np.zeros((2, 3), complex)})
    with pytest.raises(TypeError, match="mapping"):
        opt.step([np.zeros((2, 3))])


@pytest.mark.parametrize("params, error, match", [
    ({}, ValueError, "no parameters"),
    ({"a": [1.0, 2.0]}, TypeError, "'a' must be an ndarray"),
    ({"a": np.zeros(2, int)}, TypeError, "'a' must have a floating-point dtype"),
    (object(), TypeError, "state_dict"),
])
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        SGD(params, lr=0.1)


def test_read_only_and_duplicate_parameters():
    read_only = np.zeros(2)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="'a' is read-only"):
        Adam({"a": read_only})
    shared = np.zeros(2)
    with pytest.raises(ValueError, match="same array"):
        Adam({"a": shared, "b": shared})


@pytest.mark.parametrize("make, match", [
    (lambda p: SGD(p, lr=-1.0), "lr"),
    (lambda p: SGD(p, lr=float("nan")), "lr"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), "nesterov"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), "betas"),
    (lambda p: Adam(p, betas=0.9), "betas"),
    (lambda p: Adam(p, eps=-1e-8), "eps"),
    (lambda p: Adam(p, weight_decay=-0.1), "weight_decay"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make({"p": np.zeros(2)})


def test_non_numeric_hyperparameters():
    with pytest.raises(TypeError, match="lr"):
        SGD({"p": np.zeros(2)}, lr="0.1")
    with pytest.raises(TypeError, match="nesterov"):
        SGD({"p": np.zeros(2)}, lr=0.1, momentum=0.9, nesterov=1)


@pytest.mark.parametrize("make", [
    lambda model: cylstm.optim.Adam(model, lr=0.1),
    lambda model: cylstm.optim.SGD(model, lr=0.1, momentum=0.9),
])
def test_a_failing_step_changes_nothing(make):
    """A parameter replaced by an array of another shape (its gradient fitting
    the new shape) fails at its stale buffer; no parameter or buffer has moved.
    (cylstm.LSTM refuses such an assignment; any model with a state_dict() may
    be optimised.)"""

    class Model:
        def __init__(self, params):
            self.__dict__.update(params)

        def state_dict(self):
            return {name: np.array(value) for name, value in vars(self).items()}

    model = Model(cylstm.LSTM(3, 4, dtype=np.float64, seed=0).state_dict())
    optimiser = make(model)
    grads = {name: np.full_like(value, 0.5) for name, value in model.state_dict().items()}
    optimiser.step(grads)
    model.bias_hh_l0 = np.zeros(8)  # the last parameter, updated last
    grads["bias_hh_l0"] = np.ones(8)
    before = model.state_dict()
    state_before = optimiser.state_dict()
    with pytest.raises(ValueError, match=r"'bias_hh_l0'|bias_hh_l0.*shape \(8,\)"):
        optimiser.step(grads)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    after = optimiser.state_dict()["state"]
    for name, state in state_before["state"].items():
        for key, value in state.items():
            np.testing.assert_array_equal(after[name][key], value, err_msg=f"{name} {key}")


@pytest.mark.parametrize("step", [-1, 0, True, 1.5, "2", None])
def test_adam_state_with_a_bad_step_is_refused(step):
    model = cylstm.LSTM(3, 4, dtype=np.float64, seed=0)
    optimiser = cylstm.optim.Adam(model, lr=0.1)
    optimiser.step({name: np.ones_like(v) for name, v in model.state_dict().items()})
    saved = optimiser.state_dict()
    saved["state"]["weight_ih_l0"]["step"] = step
    with pytest.raises(ValueError, match=r"state 'step' of 'weight_ih_l0' must be an int >= 1"):
        optimiser.load_state_dict(saved)
