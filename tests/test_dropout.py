"""Dropout in training: `dropout` between layers (torch's) and `recurrent_dropout` (a mask on
h before the recurrent product, fixed over the sequence, Keras's), both in forward_train only.

Checked against a float64 NumPy reference that applies the same masks (the kernel's h_mask
directly, and whole models with the masks forward_train drew), torch autograd over one-layer
torch.nn.LSTMs with the same mask between them, Keras's LSTM in training with the same
recurrent mask, and central finite differences in float64; plus reproducibility from `rng`,
the masks' values, inference ignoring both options, and the errors."""

import pickle
import re

import numpy as np
import pytest

import cylstm
from cylstm import _lstm
from gradcheck import assert_gradients_close, numeric_gradients
from reference import lstm_reference
from testutil import tol

T, B, D, H = 5, 3, 3, 4
LENGTHS = [5, 2, 4]
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")


def masked_layer(x, params, suffix, h0, c0, h_mask, lengths, reverse):
    """One layer and direction whose recurrent product reads h * h_mask, in float64: for
    batch row b, (h * m_b) @ w_hh.T = h @ (w_hh * m_b).T, so each row runs the plain
    reference with its own masked w_hh."""
    steps, batch = x.shape[:2]
    w_hh = params[f"weight_hh_{suffix}"]
    outputs, h_n, c_n = [], [], []
    for b in range(batch):
        mask = np.ones(w_hh.shape[1]) if h_mask is None else h_mask[b]
        out, h, c = lstm_reference(
            x[:, b:b + 1], params[f"weight_ih_{suffix}"], w_hh * mask[None, :],
            params.get(f"bias_ih_{suffix}"), params.get(f"bias_hh_{suffix}"),
            h0[b:b + 1], c0[b:b + 1], w_hr=params.get(f"weight_hr_{suffix}"),
            lengths=None if lengths is None else [lengths[b]], reverse=reverse)
        outputs.append(out)
        h_n.append(h)
        c_n.append(c)
    return np.concatenate(outputs, axis=1), np.concatenate(h_n), np.concatenate(c_n)


def masked_model(model, x, masks, lengths=None, hx=None):
    """model's forward pass (time-major, zero padding) with forward_train's masks, float64."""
    params = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    dirs = model.num_directions
    x = np.asarray(x, np.float64)
    layers = model.num_layers * dirs
    width = model.proj_size or model.hidden_size
    if hx is None:
        hx = (np.zeros((layers, x.shape[1], width)), np.zeros((layers, x.shape[1], H)))
    layer_input, h_n, c_n = x, [], []
    for layer in range(model.num_layers):
        outputs = []
        for direction in range(dirs):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            index = layer * dirs + direction
            out, h, c = masked_layer(layer_input, params, suffix, hx[0][index], hx[1][index],
                                     masks.get(f"recurrent_{suffix}"), lengths, direction == 1)
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outputs, axis=2)
        if f"dropout_l{layer}" in masks:
            layer_input = layer_input * masks[f"dropout_l{layer}"]
    return layer_input, np.stack(h_n), np.stack(c_n)


def _mask(rng, shape, p, dtype=np.float64):
    return (np.where(rng.random(shape) >= p, 1 / (1 - p), 0)).astype(dtype)


# --- the kernel's h_mask ------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["rows", "rows-t", "columns", None])
@pytest.mark.parametrize("lengths, reverse", [(None, False), (LENGTHS, True), (LENGTHS, False)])
@pytest.mark.parametrize("proj", [0, 2])
def test_kernel_h_mask_forward_against_the_reference(dtype, strategy, lengths, reverse, proj):
    rng = np.random.default_rng(1)
    model = cylstm.LSTM(D, H, proj_size=proj, dtype=dtype, seed=2)
    params = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    width = proj or H
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h0 = rng.standard_normal((B, width)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype)
    h_mask = _mask(rng, (B, width), 0.4, dtype)
    h, c, out = h0.copy(), c0.copy(), np.zeros((T, B, width), dtype)
    _lstm.forward_layer(x, model.weight_ih_l0, model.weight_hh_l0,
                        model.bias_ih_l0 + model.bias_hh_l0, h, c, out,
                        w_hr=model.weight_hr_l0 if proj else None, lengths=lengths,
                        reverse=reverse, h_mask=h_mask, strategy=strategy)
    expected = masked_layer(x.astype(np.float64), params, "l0", h0.astype(np.float64),
                            c0.astype(np.float64), h_mask.astype(np.float64), lengths, reverse)
    for got, want in zip((out, h, c), expected):
        np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("strategy", ["rows", "columns"])
def test_a_mask_of_ones_changes_no_bit(strategy):
    """h * 1 is exact: the masked path computes the very numbers of the default path."""
    rng = np.random.default_rng(3)
    model = cylstm.LSTM(D, H, seed=4)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    results = []
    for h_mask in (None, np.ones((B, H), np.float32)):
        h, c, out = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32), np.empty(
            (T, B, H), np.float32)
        _lstm.forward_layer(x, model.weight_ih_l0, model.weight_hh_l0,
                            model.bias_ih_l0 + model.bias_hh_l0, h, c, out, h_mask=h_mask,
                            strategy=strategy)
        results.append((out, h, c))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)


def test_kernel_refuses_a_mask_of_the_wrong_shape():
    model = cylstm.LSTM(D, H, dtype=np.float64)
    h, c, out = np.zeros((B, H)), np.zeros((B, H)), np.empty((T, B, H))
    with pytest.raises(ValueError, match=r"h_mask must be \(B, P\) = \(3, 4\), got \(3, 3\)"):
        _lstm.forward_layer(np.zeros((T, B, D)), model.weight_ih_l0, model.weight_hh_l0,
                            np.zeros(4 * H), h, c, out, h_mask=np.ones((B, 3)))


# --- whole models: forward against the reference, gradients against finite differences ------

CASES = {
    "recurrent": dict(recurrent_dropout=0.4),
    "between-layers": dict(num_layers=3, dropout=0.5),
    "both-bidirectional-proj": dict(num_layers=2, bidirectional=True, proj_size=2, dropout=0.3,
                                    recurrent_dropout=0.5),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_forward_train_applies_the_masks_it_reports(dtype, case, lengths):
    model = cylstm.LSTM(D, H, dtype=dtype, seed=5, **CASES[case])
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, D))
    hx = tuple(0.5 * rng.standard_normal(shape) for shape in (
        (model.num_layers * model.num_directions, B, model.proj_size or H),
        (model.num_layers * model.num_directions, B, H)))
    output, (h_n, c_n), backward = model.forward_train(x, hx, lengths, rng=7)
    masks = backward.masks
    expected_names = {f"recurrent_l{k}{s}" for k in range(model.num_layers)
                      for s in ("", "_reverse")[:model.num_directions]
                      if model.recurrent_dropout}
    expected_names |= {f"dropout_l{k}" for k in range(model.num_layers - 1) if model.dropout}
    assert set(masks) == expected_names
    want = masked_model(model, x.astype(dtype), masks, lengths,
                        tuple(a.astype(dtype) for a in hx))
    for got, expected in zip((output, h_n, c_n), want):
        np.testing.assert_allclose(got, expected, **tol(dtype))
    # a call never drops (torch's eval mode)
    plain = masked_model(model, x.astype(dtype), {}, lengths, tuple(a.astype(dtype) for a in hx))
    np.testing.assert_allclose(model(x, hx, lengths)[0], plain[0], **tol(dtype))


class _Train:
    """The model as numeric_gradients sees it, but each call is forward_train with a fixed
    rng, so that every perturbed evaluation draws the same masks."""

    def __init__(self, model, seed):
        self._model, self._seed = model, seed

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, x, hx=None, lengths=None):
        output, state, _ = self._model.forward_train(x, hx, lengths, rng=self._seed)
        return output, state


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_gradients_against_finite_differences(case, lengths):
    model = cylstm.LSTM(D, H, dtype=np.float64, seed=8, **CASES[case])
    rng = np.random.default_rng(9)
    x = rng.standard_normal((T, B, D))
    output, (h_n, c_n), backward = model.forward_train(x, lengths=lengths, rng=10)
    grad_output = rng.standard_normal(output.shape)
    grad_state = (rng.standard_normal(h_n.shape), rng.standard_normal(c_n.shape))
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    numeric = numeric_gradients(_Train(model, 10), x, None, lengths, grad_output, grad_state,
                                max_entries=12, rng=rng)
    assert_gradients_close({"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}, numeric)


def _torch_stack(torch, model, x, hx, masks, grad_output, grad_state):
    """Autograd through one-layer torch.nn.LSTMs holding model's layers, with the dropout
    masks of `masks` between them and (recurrent masks) none; L as in gradcheck."""
    dtype = getattr(torch, model.dtype.name)
    params = model.state_dict()
    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(hx[0], requires_grad=True)
    tc0 = torch.tensor(hx[1], requires_grad=True)
    dirs = model.num_directions
    layer_input, h_n, c_n, modules = tx, [], [], []
    for layer in range(model.num_layers):
        module = torch.nn.LSTM(layer_input.shape[2], H, bidirectional=model.bidirectional,
                               dtype=dtype)
        module.load_state_dict({re.sub(rf"_l{layer}(_reverse)?$", r"_l0\1", name):
                                torch.from_numpy(value) for name, value in params.items()
                                if re.search(rf"_l{layer}(_reverse)?$", name)})
        rows = slice(layer * dirs, (layer + 1) * dirs)
        out, (h, c) = module(layer_input, (th0[rows], tc0[rows]))
        h_n.append(h)
        c_n.append(c)
        modules.append((layer, module))
        layer_input = out
        if f"dropout_l{layer}" in masks:
            layer_input = out * torch.from_numpy(masks[f"dropout_l{layer}"])
    loss = ((layer_input * torch.from_numpy(grad_output)).sum()
            + (torch.cat(h_n) * torch.from_numpy(grad_state[0])).sum()
            + (torch.cat(c_n) * torch.from_numpy(grad_state[1])).sum())
    loss.backward()
    grads = {"x": tx.grad.numpy(), "h0": th0.grad.numpy(), "c0": tc0.grad.numpy()}
    for layer, module in modules:
        for name, parameter in module.named_parameters():
            grads[name.replace("_l0", f"_l{layer}")] = parameter.grad.numpy()
    return grads, layer_input.detach().numpy()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_between_layers_matches_torch_autograd_under_the_same_mask(dtype,
                                                                           bidirectional):
    torch = pytest.importorskip("torch")
    model = cylstm.LSTM(D, H, num_layers=3, bidirectional=bidirectional, dropout=0.5,
                        dtype=dtype, seed=11)
    rng = np.random.default_rng(12)
    layers = 3 * model.num_directions
    x = rng.standard_normal((T, B, D)).astype(dtype)
    hx = tuple((0.5 * rng.standard_normal((layers, B, H))).astype(dtype) for _ in range(2))
    output, (h_n, c_n), backward = model.forward_train(x, hx, rng=np.random.default_rng(13))
    grad_output = rng.standard_normal(output.shape).astype(dtype)
    grad_state = tuple(rng.standard_normal(a.shape).astype(dtype) for a in (h_n, c_n))
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    expected, torch_output = _torch_stack(torch, model, x, hx, backward.masks, grad_output,
                                          grad_state)
    # float32: torch and cylstm both round; the gradients pass through 3 layers
    close = tol(dtype) if dtype == np.float64 else dict(atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(output, torch_output, **close)
    for name, value in {"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}.items():
        np.testing.assert_allclose(value, expected[name], err_msg=name, **close)


def test_recurrent_dropout_matches_keras_in_training_with_the_same_mask():
    """Keras 3 draws a mask per gate (four); given one mask for all four it computes what
    cylstm computes. The mask is cylstm's, handed to Keras's cell."""
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    if keras.backend.backend() != "torch":
        pytest.skip("needs Keras on its torch backend (KERAS_BACKEND=torch)")
    layer = keras.layers.LSTM(H, recurrent_dropout=0.4, return_sequences=True,
                              return_state=True)
    rng = np.random.default_rng(14)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    layer.build(x.shape)
    converted = cylstm.LSTM.from_keras(layer)
    model = cylstm.LSTM(D, H, batch_first=True, recurrent_dropout=0.4, seed=0)
    model.load_state_dict(converted.state_dict())
    output, (h_n, c_n), backward = model.forward_train(x, rng=15)
    mask = torch.from_numpy(backward.masks["recurrent_l0"])
    layer.cell.get_recurrent_dropout_mask = lambda h: [mask] * 4
    expected, h_keras, c_keras = (keras.ops.convert_to_numpy(a)
                                  for a in layer(x, training=True))
    np.testing.assert_allclose(output, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(h_n[0], h_keras, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(c_n[0], c_keras, atol=1e-5, rtol=1e-5)
    assert not np.allclose(output, model(x)[0], atol=1e-3)  # the mask did act


# --- the masks: values, reproducibility, where they act -----------------------------------------


def test_masks_are_inverted_dropout_of_the_asked_rate():
    model = cylstm.LSTM(D, 50, num_layers=2, dropout=0.25, recurrent_dropout=0.6)
    _, _, backward = model.forward_train(np.zeros((40, 20, D)), rng=0)
    masks = backward.masks
    for name, p in (("dropout_l0", 0.25), ("recurrent_l0", 0.6), ("recurrent_l1", 0.6)):
        values = masks[name]
        assert values.dtype == np.float32
        assert set(np.unique(values)) == {np.float32(0), np.float32(1 / (1 - p))}, name
        assert abs((values == 0).mean() - p) < 0.05, (name, (values == 0).mean())
    assert masks["dropout_l0"].shape == (40, 20, 50)
    assert masks["recurrent_l0"].shape == (20, 50)
    assert not np.array_equal(masks["recurrent_l0"], masks["recurrent_l1"])


def test_a_seed_reproduces_a_training_step_and_a_generator_advances():
    model = cylstm.LSTM(D, H, num_layers=2, dropout=0.5, recurrent_dropout=0.5, seed=0)
    x = np.random.default_rng(1).standard_normal((T, B, D))
    first, _, backward_first = model.forward_train(x, rng=42)
    again, _, backward_again = model.forward_train(x, rng=42)
    np.testing.assert_array_equal(first, again)
    for name, mask in backward_first.masks.items():
        np.testing.assert_array_equal(mask, backward_again.masks[name])
    generator = np.random.default_rng(42)
    one, _, _ = model.forward_train(x, rng=generator)
    two, _, _ = model.forward_train(x, rng=generator)
    np.testing.assert_array_equal(one, first)  # a Generator seeded alike draws alike
    assert not np.array_equal(one, two)


def test_inference_paths_never_drop():
    rng = np.random.default_rng(2)
    model = cylstm.LSTM(D, H, num_layers=2, dropout=0.5, recurrent_dropout=0.5,
                        dtype=np.float64, seed=3)
    plain = cylstm.LSTM(D, H, num_layers=2, dtype=np.float64)
    plain.load_state_dict(model.state_dict())
    x = rng.standard_normal((T, B, D))
    expected = plain(x)[0]
    np.testing.assert_array_equal(model(x)[0], expected)
    stream = model.stream()
    np.testing.assert_array_equal(np.concatenate([stream(x[:2]), stream(x[2:])]), expected)
    dask = pytest.importorskip("dask")
    import cylstm.dask as cylstm_dask
    lazy = cylstm_dask.forward(model, dask.array.from_array(x, chunks=(2, 2, D)))[0]
    np.testing.assert_allclose(lazy.compute(scheduler="synchronous"), expected, **tol(np.float64))


def test_a_model_without_dropout_draws_nothing():
    model = cylstm.LSTM(D, H, num_layers=2, dtype=np.float64, seed=0)
    x = np.ones((T, B, D))
    output, _, backward = model.forward_train(x, rng="not a seed")  # unused: no error
    assert backward.masks == {}
    np.testing.assert_array_equal(output, model(x)[0])


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dropout", "recurrent_dropout"])
@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_a_rate_outside_zero_one_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a probability in \[0, 1\), got"):
        cylstm.LSTM(D, H, **{name: value})


def test_a_bad_rng_and_dropout_given_to_a_call_are_refused():
    model = cylstm.LSTM(D, H, recurrent_dropout=0.5)
    with pytest.raises(TypeError, match=r"rng must be None, an int seed or a "
                                        r"numpy.random.Generator, got str 'seed'"):
        model.forward_train(np.ones((T, B, D)), rng="seed")
    with pytest.raises(TypeError, match=r"dropout"):
        model(np.ones((T, B, D)), dropout=0.5)


def test_gradients_of_one_row_against_finite_differences():
    """Batch 1 runs the row layout in both kernels (a batch runs the column layout)."""
    model = cylstm.LSTM(D, H, num_layers=2, dtype=np.float64, seed=16, dropout=0.5,
                        recurrent_dropout=0.5)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((T, D))  # unbatched
    output, (h_n, c_n), backward = model.forward_train(x, rng=18)
    grad_output = rng.standard_normal(output.shape)
    grad_state = (rng.standard_normal(h_n.shape), rng.standard_normal(c_n.shape))
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    numeric = numeric_gradients(_Train(model, 18), x, None, None, grad_output, grad_state)
    assert_gradients_close({"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}, numeric)


def test_the_rates_survive_pickle_save_and_torch(tmp_path):
    model = cylstm.LSTM(D, H, num_layers=2, dropout=0.3, recurrent_dropout=0.2, seed=0)
    path = tmp_path / "model.npz"
    cylstm.save(path, model)
    for clone in (pickle.loads(pickle.dumps(model)), cylstm.load(path)):
        assert (clone.dropout, clone.recurrent_dropout) == (0.3, 0.2)
    torch = pytest.importorskip("torch")
    module = model.to_torch()  # torch has no recurrent dropout: only dropout goes
    assert isinstance(module, torch.nn.LSTM) and module.dropout == 0.3
    assert cylstm.LSTM.from_torch(module).dropout == 0.3


def test_masks_are_drawn_in_the_documented_order():
    """Recurrent masks first, in state order (layer, direction), then the between-layer
    masks: generator.random(shape) >= p, scaled by 1 / (1 - p)."""
    model = cylstm.LSTM(D, H, num_layers=2, bidirectional=True, dropout=0.25,
                        recurrent_dropout=0.5, dtype=np.float64)
    _, _, backward = model.forward_train(np.ones((T, B, D)), rng=21)
    generator = np.random.default_rng(21)
    expected = {name: _mask(generator, (B, H), 0.5)
                for name in ("recurrent_l0", "recurrent_l0_reverse", "recurrent_l1",
                             "recurrent_l1_reverse")}
    expected["dropout_l0"] = _mask(generator, (T, B, 2 * H), 0.25)
    masks = backward.masks
    assert list(masks) == list(expected)
    for name, mask in expected.items():
        np.testing.assert_array_equal(masks[name], mask, err_msg=name)
