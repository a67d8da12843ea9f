"""The cell's variants (issue 14): peepholes, clip, input_forget, every ONNX activation with
its alpha and beta, reverse (ONNX) and go_backwards (Keras), alone and combined with lengths,
padding, projection, layers, directions and layouts, under every kernel strategy, forward
against the float64 reference (tests/reference.py) and backward against finite differences;
the plain cell still runs the fused cell, bit for bit."""

import numpy as np
import pytest

import cylstm
from cylstm import _lstm, _walk, plans
from gradcheck import assert_gradients_close, numeric_gradients
from modelutil import random_hx, random_input, random_lengths
from reference import reference_model
from testutil import assert_close

# Each activation with alpha and beta away from their defaults, in the slot (f, g or h)
# where it is used in practice; the others keep the plain cell's.
ACTIVATION_CASES = {
    "relu": [("sigmoid",), ("relu",), ("tanh",)],
    "affine": [("sigmoid",), ("tanh",), ("affine", 0.7, 0.2)],
    "leaky_relu": [("sigmoid",), ("leaky_relu", 0.1), ("tanh",)],
    "thresholded_relu": [("sigmoid",), ("tanh",), ("thresholded_relu", 0.1)],
    "scaled_tanh": [("sigmoid",), ("scaled_tanh", 1.3, 0.6), ("scaled_tanh", 0.8, 1.2)],
    "hard_sigmoid": [("hard_sigmoid", 0.25, 0.45), ("tanh",), ("tanh",)],
    "elu": [("sigmoid",), ("elu", 0.8), ("tanh",)],
    "softsign": [("sigmoid",), ("softsign",), ("softsign",)],
    "softplus": [("sigmoid",), ("tanh",), ("softplus",)],
    "tanh_gates": [("tanh",), ("sigmoid",), ("hard_sigmoid", 0.3, 0.4)],
}
SINGLE_OPTIONS = {
    "peepholes": dict(peepholes=True),
    "clip": dict(clip=0.4),
    "input_forget": dict(input_forget=True),
    "reverse": dict(reverse=True),
    "go_backwards": dict(go_backwards=True),
    **{f"activations={name}": dict(activations=acts) for name, acts in ACTIVATION_CASES.items()},
}


def reference_for(model, x, hx=None, lengths=None):
    """reference_model with every option of the model's configuration."""
    config = model._config
    activations = None
    if config.activations:
        activations = [[tuple(act) for act in triple] for triple in config.activations]
    return reference_model(
        model.state_dict(), x, hx, lengths, batch_first=model.batch_first,
        padding=model.padding, dtype=model.dtype, reverse=config.reverse,
        go_backwards=config.go_backwards, clip=config.clip, input_forget=config.input_forget,
        activations=activations)


def check_variant(model, x, hx=None, lengths=None):
    out, (h_n, c_n) = model(x, hx, lengths)
    r_out, (r_h, r_c) = reference_for(model, x, hx, lengths)
    assert_close(out, r_out, model.dtype, "output")
    assert_close(h_n, r_h, model.dtype, "h_n")
    assert_close(c_n, r_c, model.dtype, "c_n")
    return out


@pytest.fixture
def strategy():
    """Force a kernel strategy for one test; the suite's plan mode comes back afterwards."""
    before = plans.get_mode()
    yield plans.set_mode
    plans.set_mode(before)


@pytest.mark.parametrize("name", SINGLE_OPTIONS)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_each_variant_matches_the_reference(name, with_lengths, dtype):
    rng = np.random.default_rng(len(name))
    model = cylstm.LSTM(3, 70, dtype=dtype, seed=1, **SINGLE_OPTIONS[name])  # H over a block
    x = random_input(rng, model, 7, 4)
    lengths = random_lengths(rng, 4, 7) if with_lengths else None
    hx = random_hx(rng, model, 4)
    out = check_variant(model, x, hx, lengths)
    # the variant changes the numbers: the comparison above is not the plain cell's
    plain = cylstm.LSTM(3, 70, dtype=dtype, seed=1)
    plain.load_state_dict({key: value for key, value in model.state_dict().items()
                           if "peephole" not in key})
    assert np.abs(out - plain(x, hx, lengths)[0]).max() > 1e-3


COMBINATIONS = [
    dict(peepholes=True, clip=0.6, input_forget=True, reverse=True),
    dict(peepholes=True, clip=0.6, go_backwards=True, proj_size=2, num_layers=2,
         padding="carry"),
    dict(peepholes=True, input_forget=True, bidirectional=True, num_layers=2, batch_first=True,
         activations=[[("hard_sigmoid", 0.3, 0.5), ("elu", 0.7), ("softsign",)],
                      [("sigmoid",), ("scaled_tanh", 1.2, 0.5), ("softplus",)]]),
    dict(clip=0.8, go_backwards=True, batch_first=True, padding="carry",
         activations=[("sigmoid",), ("leaky_relu", 0.2), ("affine", 0.5, 0.1)]),
    dict(peepholes=True, bidirectional=True, proj_size=3, padding="carry", bias=False,
         activations=[("tanh",), ("relu",), ("thresholded_relu", 0.05)]),
]


@pytest.mark.parametrize("strategy_name", cylstm.plans.STRATEGIES)
@pytest.mark.parametrize("options", COMBINATIONS, ids=range(len(COMBINATIONS)))
@pytest.mark.parametrize("batch, with_lengths", [(1, False), (5, False), (5, True)])
def test_combinations_under_every_strategy(strategy, strategy_name, options, batch,
                                           with_lengths, dtype):
    strategy(strategy_name)
    rng = np.random.default_rng(batch)
    options = dict(options)
    model = cylstm.LSTM(4, 6, options.pop("num_layers", 1), dtype=dtype, seed=2, **options)
    x = random_input(rng, model, 9, batch)
    lengths = random_lengths(rng, batch, 9) if with_lengths else None
    check_variant(model, x, random_hx(rng, model, batch), lengths)


@pytest.mark.parametrize("options", COMBINATIONS[:2], ids=range(2))
def test_unbatched(options, dtype):
    rng = np.random.default_rng(3)
    options = dict(options)
    model = cylstm.LSTM(4, 6, options.pop("num_layers", 1), dtype=dtype, seed=2, **options)
    check_variant(model, random_input(rng, model, 6), random_hx(rng, model))


def test_clip_binds_on_the_test_data():
    """clip=0.4 changes the numbers: some pre-activations really are clipped."""
    rng = np.random.default_rng(0)
    model = cylstm.LSTM(3, 70, dtype=np.float64, seed=1, clip=0.4)
    x = random_input(rng, model, 7, 4)
    clipped, _ = reference_for(model, x)
    unclipped, _ = reference_model(model.state_dict(), x)
    assert np.abs(clipped - unclipped).max() > 1e-2


def test_the_plain_cell_runs_the_fused_cell_bit_for_bit(dtype):
    """A plain configuration passes no variant options, and the kernel's variant keywords
    at their defaults leave the plain fused cell's numbers exactly as they are."""
    model = cylstm.LSTM(5, 16, dtype=dtype, seed=4, activations=[("sigmoid",), ("tanh",),
                                                                ("tanh",)])
    assert model._config.plain_cell and _walk.cell_options(model._config, 0) == {}
    rng = np.random.default_rng(1)
    x = random_input(rng, model, 20, 3, dtype)
    w_ih, w_hh, b_ih, b_hh = _walk.kernel_weights(model, model._config)[0][0][:4]
    bias = b_ih + b_hh
    for strategy_name in _lstm.STRATEGIES:
        results = []
        for options in ({}, dict(peephole=None, clip=None, input_forget=False,
                                 activations=[("sigmoid", 0, 0), ("tanh", 0, 0),
                                              ("tanh", 0, 0)])):
            h, c = np.zeros((3, 16), dtype), np.zeros((3, 16), dtype)
            out = np.empty((20, 3, 16), dtype)
            _lstm.forward_layer(x, w_ih, w_hh, bias, h, c, out, strategy=strategy_name,
                                **options)
            results.append((out, h, c))
        for first, second in zip(*results):
            np.testing.assert_array_equal(first, second)


def test_the_variant_cell_keeps_pre_activations_for_training():
    """keep_act holds the clipped pre-activations: |z| <= clip, and some equal it."""
    rng = np.random.default_rng(2)
    T, B, D, H = 6, 3, 4, 5
    x = rng.standard_normal((T, B, D))
    w_ih, w_hh = rng.standard_normal((4 * H, D)), 0.3 * rng.standard_normal((4 * H, H))
    act = np.zeros((T, B, 4 * H))
    _lstm.forward_layer(x, w_ih, w_hh, np.zeros(4 * H), np.zeros((B, H)), np.zeros((B, H)),
                        np.zeros((T, B, H)), keep_act=act, keep_c=np.zeros((T, B, H)),
                        clip=0.5)
    assert np.abs(act).max() == 0.5 and (np.abs(act) == 0.5).sum() > 10
    assert (np.abs(act) < 0.5).sum() > 10


GRADIENT_CASES = [
    dict(peepholes=True),
    dict(clip=0.3),
    dict(input_forget=True, peepholes=True),
    dict(reverse=True, peepholes=True, clip=0.5),
    dict(go_backwards=True, proj_size=2, num_layers=2, padding="carry", input_forget=True),
    dict(peepholes=True, proj_size=2, bias=False, bidirectional=True),
    dict(bidirectional=True, peepholes=True, batch_first=True,
         activations=[("hard_sigmoid", 0.3, 0.5), ("elu", 0.7), ("softsign",)]),
    dict(activations=[("leaky_relu", 0.1), ("affine", 0.5, 0.1), ("thresholded_relu", 0.05)]),
    dict(activations=[("sigmoid",), ("scaled_tanh", 1.1, 0.6), ("softplus",)]),
    dict(activations=[("tanh",), ("relu",), ("tanh",)], peepholes=True),
]


@pytest.mark.parametrize("options", GRADIENT_CASES, ids=range(len(GRADIENT_CASES)))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_training_gradients_match_finite_differences(options, with_lengths):
    rng = np.random.default_rng(7)
    options = dict(options)
    model = cylstm.LSTM(3, 4, options.pop("num_layers", 1), dtype=np.float64, seed=5,
                        **options)
    x = random_input(rng, model, 5, 3)
    hx = random_hx(rng, model, 3)
    lengths = np.array([5, 2, 4]) if with_lengths else None
    out, (h_n, c_n), backward = model.forward_train(x, hx, lengths)
    expected_out, (expected_h, _) = reference_for(model, x, hx, lengths)
    assert_close(out, expected_out, np.float64, "forward_train output")
    assert_close(h_n, expected_h, np.float64, "forward_train h_n")
    grad_output = rng.standard_normal(out.shape)
    grad_state = rng.standard_normal(h_n.shape), rng.standard_normal(c_n.shape)
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, grad_state)
    assert list(grads) == list(model.state_dict())
    numeric = numeric_gradients(model, x, hx, lengths, grad_output, grad_state)
    assert_gradients_close({"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}, numeric,
                           rtol=1e-6, atol=1e-8)


def test_training_in_float32_agrees_with_float64():
    """The float32 variant backward computes the same gradients within float32 rounding."""
    options = dict(peepholes=True, clip=0.5, activations=[("hard_sigmoid",), ("tanh",),
                                                          ("softsign",)])
    rng = np.random.default_rng(8)
    wide = cylstm.LSTM(3, 6, dtype=np.float64, seed=6, **options)
    narrow = cylstm.LSTM(3, 6, dtype=np.float32, seed=6, **options)
    narrow.load_state_dict(wide.state_dict())
    x = random_input(rng, wide, 6, 2).astype(np.float32)
    results = []
    for model in (wide, narrow):
        out, _, backward = model.forward_train(x)
        results.append(backward(np.ones(out.shape))[2])
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, atol=2e-5, rtol=1e-4,
                                   err_msg=name)


def test_stream_runs_the_cell_variants_and_refuses_reversed_reading():
    rng = np.random.default_rng(9)
    model = cylstm.LSTM(3, 5, dtype=np.float64, seed=1, peepholes=True, clip=0.5,
                        activations=[("hard_sigmoid",), ("tanh",), ("softsign",)])
    x = random_input(rng, model, 8, 2)
    stream = model.stream()
    streamed = np.concatenate([stream(x[:3]), stream(x[3:])])
    assert_close(streamed, reference_for(model, x)[0], np.float64, "streamed output")
    for option in ("reverse", "go_backwards"):
        with pytest.raises(ValueError, match=f"{option}=True cannot stream"):
            cylstm.LSTM(3, 5, **{option: True}).stream()


def test_dask_runs_reverse_and_the_cell_variants_and_refuses_go_backwards():
    dask = pytest.importorskip("dask")
    import dask.array as da

    from cylstm.dask import forward

    rng = np.random.default_rng(10)
    model = cylstm.LSTM(3, 5, 2, dtype=np.float64, seed=1, reverse=True, peepholes=True,
                        input_forget=True)
    x, lengths = random_input(rng, model, 10, 4), np.array([10, 3, 7, 1])
    out, (h_n, c_n) = forward(model, da.from_array(x, chunks=(4, 2, 3)), lengths=lengths)
    with dask.config.set(scheduler="sync"):
        out, h_n, c_n = dask.compute(out, h_n, c_n)
    r_out, (r_h, r_c) = reference_for(model, x, None, lengths)
    assert_close(out, r_out, np.float64, "output")
    assert_close(h_n, r_h, np.float64, "h_n")
    assert_close(c_n, r_c, np.float64, "c_n")
    with pytest.raises(NotImplementedError, match="go_backwards"):
        forward(cylstm.LSTM(3, 5, go_backwards=True), da.zeros((4, 2, 3)))


@pytest.mark.parametrize("options", [COMBINATIONS[1], COMBINATIONS[2]], ids=["split", "dirs"])
def test_two_threads(options, dtype):
    """num_threads=2: the batch split over threads, or the two directions side by side."""
    rng = np.random.default_rng(11)
    options = dict(options)
    model = cylstm.LSTM(4, 6, options.pop("num_layers", 1), dtype=dtype, seed=2,
                        num_threads=2, **options)
    x = random_input(rng, model, 9, 6)
    check_variant(model, x, random_hx(rng, model, 6), random_lengths(rng, 6, 9))


def test_unbatched_training_with_go_backwards():
    rng = np.random.default_rng(12)
    model = cylstm.LSTM(3, 4, dtype=np.float64, seed=1, go_backwards=True, peepholes=True,
                        clip=0.6)
    x = random_input(rng, model, 5)
    out, _, backward = model.forward_train(x)
    grad_output = rng.standard_normal(out.shape)
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output)
    numeric = numeric_gradients(model, x, grad_output=grad_output)
    assert_gradients_close({"x": grad_x, "h0": grad_h0, "c0": grad_c0, **grads}, numeric,
                           rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ACTIVATION_CASES)
def test_nan_stays_in_its_row(name):
    """A NaN in one row's input makes that row's outputs NaN and leaves the others alone."""
    model = cylstm.LSTM(3, 5, dtype=np.float64, seed=1, peepholes=True, clip=2.0,
                        activations=ACTIVATION_CASES[name])
    x = random_input(np.random.default_rng(13), model, 4, 3)
    x[1, 0, 2] = np.nan
    out, (h_n, c_n) = model(x)
    assert np.isnan(out[1:, 0]).all() and np.isnan(h_n[:, 0]).all()
    assert np.isfinite(out[:, 1:]).all() and np.isfinite(out[0]).all()
