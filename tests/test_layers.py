"""Stacked, bidirectional and projected (LSTMP) models against the float64 reference: every
combination of num_layers 1-3, bidirectional, proj_size, bias, batch_first and unbatched input;
shapes of everything; parameter names, shapes, order and init; how the layers are wired."""

import itertools
import re

import numpy as np
import pytest

import cylstm
from modelutil import (assert_results_same, assert_same, check_model, output_shape,
                       random_hx, random_input, state_shapes)
from reference import reference_model, sigmoid
from testutil import tol

T, B, D, H, P = 6, 3, 4, 5, 3
# torch warns that its oneDNN path has no projections and falls back: harmless here
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
ERRORS = (ValueError, TypeError)

# layout: time-major, batch_first, or unbatched (with batch_first on or off: it must not matter)
LAYOUTS = ["tm", "bf", "unbatched", "unbatched-bf"]
COMBOS = list(itertools.product([1, 2, 3], [False, True], [0, P], [True, False], LAYOUTS))


def _combo_id(combo):
    layers, bidir, proj, bias, layout = combo
    return f"L{layers}-{'bi' if bidir else 'uni'}-p{proj}-{'bias' if bias else 'nobias'}-{layout}"


def _model(layers=2, bidirectional=True, proj=P, bias=True, batch_first=False,
           dtype=np.float64, seed=0, scale=1.0, **kwargs):
    """A seeded model; scale > 1 enlarges the weights so that deep projected stacks keep
    outputs of order 0.1-1 (at the default init they shrink layer by layer)."""
    model = cylstm.LSTM(D, H, layers, bias=bias, batch_first=batch_first,
                        bidirectional=bidirectional, proj_size=proj, dtype=dtype, seed=seed,
                        **kwargs)
    if scale != 1.0:
        model.load_state_dict({k: v * scale for k, v in model.state_dict().items()})
    return model


def _expected_names(layers, bidirectional, proj, bias):
    """torch.nn.LSTM's parameter order, spelled out: layer, then direction, then
    w_ih, w_hh, b_ih, b_hh, w_hr."""
    names = []
    for k in range(layers):
        for suffix in [""] + (["_reverse"] if bidirectional else []):
            kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else []) \
                + (["weight_hr"] if proj else [])
            names += [f"{kind}_l{k}{suffix}" for kind in kinds]
    return names


# --- the full matrix against the reference ---------------------------------------------


@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("combo", COMBOS, ids=_combo_id)
def test_matches_reference(combo, with_hx, dtype):
    layers, bidir, proj, bias, layout = combo
    unbatched = layout.startswith("unbatched")
    model = _model(layers, bidir, proj, bias, batch_first=layout.endswith("bf"), dtype=dtype,
                   seed=layers * 10 + proj, scale=2.5)
    rng = np.random.default_rng(len(_combo_id(combo)))
    batch = None if unbatched else B
    x = random_input(rng, model, T, batch)
    hx = random_hx(rng, model, batch) if with_hx else None
    keep = [x.copy()] + ([a.copy() for a in hx] if hx else [])
    out, (h_n, c_n) = check_model(model, x, hx)

    dirs = 2 if bidir else 1
    width = proj or H
    assert out.shape == output_shape(model, T, batch)
    assert out.shape[-1] == dirs * width
    assert (h_n.shape, c_n.shape) == state_shapes(model, batch)
    assert h_n.shape[0] == c_n.shape[0] == layers * dirs
    assert h_n.shape[-1] == width and c_n.shape[-1] == H
    for a in (out, h_n, c_n):
        assert a.dtype == np.dtype(dtype)
    # the inputs are untouched
    for a, k in zip([x] + (list(hx) if hx else []), keep):
        np.testing.assert_array_equal(a, k)
    # h_n of the last layer's forward direction is its output at the last step
    last_fwd = (layers - 1) * dirs
    out_tm = out[:, None] if unbatched else (out.transpose(1, 0, 2) if model.batch_first
                                             else out)
    np.testing.assert_array_equal(h_n[last_fwd], out_tm[-1, ..., :width].reshape(
        h_n[last_fwd].shape))
    if bidir:  # ... and of its reverse direction, its output at the FIRST step
        np.testing.assert_array_equal(h_n[last_fwd + 1], out_tm[0, ..., width:].reshape(
            h_n[last_fwd].shape))
    # the last layer's output is not vanishingly small (the comparison means something)
    assert np.abs(out).max() > 0.01


@pytest.mark.parametrize("T_,B_", [(1, 1), (1, 4), (9, 1), (40, 2), (3, 37)])
def test_odd_sizes_match_reference(T_, B_, dtype):
    """T = 1, B = 1, a batch of 37 and a longer sequence for the stacked bidirectional LSTMP."""
    rng = np.random.default_rng(T_ * 100 + B_)
    for proj in (0, 2):
        model = _model(3, True, proj, dtype=dtype, seed=T_ + B_)
        check_model(model, random_input(rng, model, T_, B_), random_hx(rng, model, B_))


def test_empty_sequence_and_batch(dtype):
    """T = 0 returns the initial state; B = 0 returns empty arrays of the right shapes."""
    rng = np.random.default_rng(0)
    model = _model(2, True, P, dtype=dtype)
    hx = random_hx(rng, model, B, dtype)
    out, (h_n, c_n) = model(np.zeros((0, B, D)), hx)
    assert out.shape == (0, B, 2 * P) and out.dtype == np.dtype(dtype)
    assert_same(h_n, hx[0])
    assert_same(c_n, hx[1])
    out, (h_n, c_n) = model(np.zeros((T, 0, D)))
    assert out.shape == (T, 0, 2 * P)
    assert (h_n.shape, c_n.shape) == state_shapes(model, 0)


def test_float32_model_takes_float64_input():
    rng = np.random.default_rng(1)
    model = _model(2, True, P, dtype=np.float32)
    x = random_input(rng, model, T, B)  # float64
    out, (h_n, c_n) = check_model(model, x, random_hx(rng, model, B))
    assert out.dtype == h_n.dtype == c_n.dtype == np.float32


@pytest.mark.parametrize("layout", ["F", "strided", "readonly", "list"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_input_layouts_give_identical_results(layout, batch_first, dtype):
    """Fortran-order, strided, read-only and nested-list inputs (x and hx) give bit-identical
    results to C-order ones, and are not modified."""
    rng = np.random.default_rng(3)
    model = _model(2, True, P, batch_first=batch_first, dtype=dtype)
    x = random_input(rng, model, T, B, dtype)
    hx = random_hx(rng, model, B, dtype)
    expected = model(x, hx)

    def convert(a):
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "strided":
            return np.repeat(a, 2, axis=-1)[..., ::2]
        if layout == "list":
            return a.tolist()
        a = a.copy()
        a.flags.writeable = False
        return a

    x2, hx2 = convert(x), tuple(convert(a) for a in hx)
    assert_results_same(model(x2, hx2), expected)
    np.testing.assert_array_equal(np.asarray(x2), x)


# --- wiring, checked without the reference ------------------------------------------------


def _single_layer(model, layer):
    """A one-layer model holding `layer` of `model` (renamed to l0)."""
    width = model.proj_size or model.hidden_size
    inputs = model.input_size if layer == 0 else width * model.num_directions
    single = cylstm.LSTM(inputs, model.hidden_size, 1, bias=model.bias,
                         bidirectional=model.bidirectional, proj_size=model.proj_size,
                         dtype=model.dtype, seed=0)
    single.load_state_dict({
        re.sub(r"_l\d+", "_l0", name): value for name, value in model.state_dict().items()
        if re.search(rf"_l{layer}(_reverse)?$", name)})
    return single


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("proj", [0, P])
def test_stack_is_a_chain_of_single_layers(bidirectional, proj, dtype):
    """Layer k reads layer k - 1's whole output (both directions); h_n/c_n are stacked
    layer-major, direction-minor."""
    rng = np.random.default_rng(5)
    model = _model(3, bidirectional, proj, dtype=dtype, seed=2)
    dirs = 2 if bidirectional else 1
    x = random_input(rng, model, T, B, dtype)
    h0, c0 = random_hx(rng, model, B, dtype)
    out, (h_n, c_n) = model(x, (h0, c0))
    layer_input = x
    for layer in range(3):
        rows = slice(layer * dirs, (layer + 1) * dirs)
        layer_input, (h, c) = _single_layer(model, layer)(layer_input, (h0[rows], c0[rows]))
        np.testing.assert_allclose(h_n[rows], h, **tol(dtype))
        np.testing.assert_allclose(c_n[rows], c, **tol(dtype))
    np.testing.assert_allclose(out, layer_input, **tol(dtype))


@pytest.mark.parametrize("proj", [0, P])
def test_reverse_direction_runs_backwards(proj, dtype):
    """The backward half of a bidirectional layer is a forward LSTM with the _reverse weights
    run on the time-reversed sequence, its outputs flipped back; concatenated after the
    forward half."""
    rng = np.random.default_rng(6)
    bi = _model(1, True, proj, dtype=dtype, seed=3)
    x = random_input(rng, bi, T, B, dtype)
    h0, c0 = random_hx(rng, bi, B, dtype)
    out, (h_n, c_n) = bi(x, (h0, c0))
    width = proj or H
    sd = bi.state_dict()
    for direction, suffix in enumerate(["", "_reverse"]):
        uni = cylstm.LSTM(D, H, proj_size=proj, dtype=dtype, seed=0)
        uni.load_state_dict({name: sd[name + suffix] for name in uni.state_dict()})
        xs = x[::-1] if direction else x
        o, (h, c) = uni(xs, (h0[direction:direction + 1], c0[direction:direction + 1]))
        o = o[::-1] if direction else o
        half = out[:, :, direction * width:(direction + 1) * width]
        np.testing.assert_allclose(half, o, **tol(dtype))
        np.testing.assert_allclose(h_n[direction], h[0], **tol(dtype))
        np.testing.assert_allclose(c_n[direction], c[0], **tol(dtype))


def test_projection_one_step_by_hand(dtype):
    """LSTMP, one step from the zero state: c = i*g, h = W_hr (o * tanh(c)), and the projected
    h is what W_hh sees at the next step."""
    rng = np.random.default_rng(7)
    model = _model(1, False, 2, dtype=dtype, seed=4)
    x = rng.standard_normal((2, 1, D)).astype(dtype)
    out, (h_n, c_n) = model(x)
    p = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    h, c = np.zeros(2), np.zeros(H)
    for t in range(2):
        z = p["weight_ih_l0"] @ x[t, 0] + p["bias_ih_l0"] + p["weight_hh_l0"] @ h \
            + p["bias_hh_l0"]
        i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), \
            sigmoid(z[3 * H:])
        c = f * c + i * g
        h = p["weight_hr_l0"] @ (o * np.tanh(c))
        np.testing.assert_allclose(out[t, 0], h, **tol(dtype))
    np.testing.assert_allclose(h_n[0, 0], h, **tol(dtype))
    np.testing.assert_allclose(c_n[0, 0], c, **tol(dtype))


def test_batch_rows_are_independent(dtype):
    rng = np.random.default_rng(8)
    model = _model(2, True, P, dtype=dtype)
    x = random_input(rng, model, T, B, dtype)
    h0, c0 = random_hx(rng, model, B, dtype)
    out, (h_n, c_n) = model(x, (h0, c0))
    for b in range(B):
        o, (h, c) = model(x[:, b], (h0[:, b], c0[:, b]))  # unbatched
        np.testing.assert_allclose(out[:, b], o, **tol(dtype))
        np.testing.assert_allclose(h_n[:, b], h, **tol(dtype))
        np.testing.assert_allclose(c_n[:, b], c, **tol(dtype))


# --- parameters -------------------------------------------------------------------------


def test_parameter_names_by_hand():
    model = _model(2, True, P, bias=True)
    assert list(model.state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0",
        "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
        "bias_hh_l0_reverse", "weight_hr_l0_reverse",
        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1", "weight_hr_l1",
        "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse",
        "bias_hh_l1_reverse", "weight_hr_l1_reverse"]


@pytest.mark.parametrize("combo", [c[:4] for c in COMBOS if c[4] == "tm"],
                         ids=lambda c: "L{}-{}-p{}-{}".format(*c))
def test_parameter_names_shapes_dtypes(combo, dtype):
    layers, bidir, proj, bias = combo
    model = _model(layers, bidir, proj, bias, dtype=dtype)
    sd = model.state_dict()
    assert list(sd) == _expected_names(layers, bidir, proj, bias)
    width = proj or H
    dirs = 2 if bidir else 1
    for name, value in sd.items():
        kind, layer = re.match(r"(\w+?)_l(\d+)", name).groups()
        layer_inputs = D if layer == "0" else dirs * width
        expected = {"weight_ih": (4 * H, layer_inputs), "weight_hh": (4 * H, width),
                    "bias_ih": (4 * H,), "bias_hh": (4 * H,), "weight_hr": (proj, H)}[kind]
        assert value.shape == expected, name
        assert value.dtype == np.dtype(dtype), name
        attr = getattr(model, name)
        assert isinstance(attr, np.ndarray) and attr.flags.c_contiguous
        np.testing.assert_array_equal(attr, value)
    assert model.num_layers == layers and model.bidirectional == bidir
    assert model.proj_size == proj and model.bias == bias
    config = model.config()
    assert (config["num_layers"], config["bidirectional"], config["proj_size"],
            config["bias"]) == (layers, bidir, proj, bias)


def test_parameter_names_and_shapes_match_torch():
    torch = pytest.importorskip("torch")
    for layers, bidir, proj, bias in itertools.product([1, 3], [False, True], [0, 2],
                                                       [True, False]):
        theirs = torch.nn.LSTM(D, H, layers, bias=bias, bidirectional=bidir,
                               proj_size=proj).state_dict()
        ours = _model(layers, bidir, proj, bias).state_dict()
        assert list(ours) == list(theirs)
        for name in theirs:
            assert ours[name].shape == tuple(theirs[name].shape), name


def test_init_range_and_seed():
    """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)) (H = hidden_size, also for projections and
    reverse weights); the same seed gives the same weights, other seeds and other parameters
    differ."""
    hidden = 64
    bound = 1 / np.sqrt(hidden)
    kwargs = dict(num_layers=2, bidirectional=True, proj_size=16, dtype=np.float64)
    sd = cylstm.LSTM(12, hidden, seed=0, **kwargs).state_dict()
    for name, value in sd.items():
        assert np.abs(value).max() <= bound, name
        assert np.abs(value).max() > 0.9 * bound, name
        assert abs(value.mean()) < 0.2 * bound, name
        assert value.min() < 0 < value.max(), name
    same = cylstm.LSTM(12, hidden, seed=0, **kwargs).state_dict()
    other = cylstm.LSTM(12, hidden, seed=1, **kwargs).state_dict()
    for name in sd:
        np.testing.assert_array_equal(sd[name], same[name])
        assert not np.array_equal(sd[name], other[name]), name
    assert not np.array_equal(sd["weight_hh_l1"], sd["weight_hh_l1_reverse"])
    assert not np.array_equal(sd["weight_hr_l0"], sd["weight_hr_l1"])
    f32 = cylstm.LSTM(12, hidden, seed=0, **{**kwargs, "dtype": np.float32}).state_dict()
    for name in sd:
        assert f32[name].dtype == np.float32
        np.testing.assert_array_equal(f32[name], sd[name].astype(np.float32))


def test_parameters_changed_in_place_take_effect(dtype):
    rng = np.random.default_rng(9)
    model = _model(2, True, P, dtype=dtype)
    x = random_input(rng, model, T, B, dtype)
    before = model(x)[0]
    model.weight_hr_l1_reverse *= 0.5
    model.bias_hh_l0[:H] += 1.0
    after = check_model(model, x)[0]
    assert not np.allclose(before, after)


def test_assigned_parameter_of_wrong_shape_is_refused():
    model = _model(2, True, P)
    before = model(np.ones((T, B, D)))[0]
    with pytest.raises(ValueError, match="weight_ih_l1") as info:
        model.weight_ih_l1 = np.zeros((4 * H, P))  # layer 1 reads 2 * P features
    assert _contains_run(str(info.value), (4 * H, 2 * P)), str(info.value)
    assert _contains_run(str(info.value), (4 * H, P)), str(info.value)
    np.testing.assert_array_equal(model(np.ones((T, B, D)))[0], before)  # nothing changed


def test_assigned_parameter_is_stored_in_the_model_dtype():
    model = _model(1, False, 0)  # float64
    model.bias_ih_l0 = np.arange(4 * H, dtype=np.float32).tolist()
    assert model.bias_ih_l0.dtype == np.float64 and model.bias_ih_l0.flags.c_contiguous
    assert model.state_dict()["bias_ih_l0"].dtype == np.float64
    with pytest.raises(TypeError, match="bias_ih_l0 must be real"):
        model.bias_ih_l0 = np.zeros(4 * H, complex)
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del model.bias_ih_l0


@pytest.mark.parametrize("name, value", [("bias", False), ("padding", "zero"),
                                         ("hidden_size", 3), ("dtype", np.float32)])
def test_configuration_is_read_only(name, value):
    model = _model(1, False, 0)
    with pytest.raises(AttributeError, match=f"{name} is fixed when the model is made"):
        setattr(model, name, value)
    assert model.config()[name] == _model(1, False, 0).config()[name]


def test_config_and_repr():
    model = _model(3, True, 2, bias=False, batch_first=True, padding="carry")
    config = model.config()
    assert config == dict(input_size=D, hidden_size=H, num_layers=3, bias=False,
                          batch_first=True, bidirectional=True, proj_size=2, padding="carry",
                          dtype="float64")
    rebuilt = cylstm.LSTM(**config)
    assert rebuilt.config() == config
    text = repr(model)
    for part in ("num_layers=3", "bidirectional=True", "proj_size=2", "carry"):
        assert part in text, text


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("proj", [H, H + 1, -1, 2.0, "2", True, None, [2]])
def test_bad_proj_size(proj):
    with pytest.raises(ERRORS, match="proj_size"):
        cylstm.LSTM(D, H, proj_size=proj)


@pytest.mark.parametrize("padding", ["zero", "Zeros", "keep", "", None, 0, ["zeros"]])
def test_bad_padding(padding):
    with pytest.raises(ValueError, match="padding"):
        cylstm.LSTM(D, H, padding=padding)


@pytest.mark.parametrize("layers", [0, -1, 1.5, True, "2"])
def test_bad_num_layers(layers):
    with pytest.raises(ERRORS, match="num_layers"):
        cylstm.LSTM(D, H, layers)


def _numbers(msg):
    return [int(n) for n in re.findall(r"\d+", msg)]


def _contains_run(msg, seq):
    nums, seq = _numbers(msg), list(seq)
    return any(nums[i:i + len(seq)] == seq for i in range(len(nums) - len(seq) + 1))


@pytest.mark.parametrize("which,bad", [
    ("h0", (1, B, P)),       # one layer's worth for a 2-layer bidirectional model
    ("h0", (2, B, P)),       # one direction's worth
    ("h0", (4, B, H)),       # h0 has proj_size features, not hidden_size
    ("c0", (4, B, P)),       # c0 has hidden_size features, not proj_size
    ("c0", (2, B, H)),
    ("c0", (4, B + 1, H)),
])
def test_bad_state_shapes(which, bad):
    model = _model(2, True, P)
    shapes = {"h0": (4, B, P), "c0": (4, B, H)}
    hx = tuple(np.zeros(bad if name == which else shape) for name, shape in shapes.items())
    with pytest.raises(ValueError, match=which) as info:
        model(np.zeros((T, B, D)), hx)
    assert _contains_run(str(info.value), shapes[which]), str(info.value)
    assert _contains_run(str(info.value), bad), str(info.value)


def test_bad_state_shapes_unbatched():
    model = _model(2, True, P)
    with pytest.raises(ValueError, match="h0") as info:
        model(np.zeros((T, D)), (np.zeros((4, B, P)), np.zeros((4, B, H))))
    assert _contains_run(str(info.value), (4, P)), str(info.value)
    with pytest.raises(ValueError, match="c0"):
        model(np.zeros((T, D)), (np.zeros((4, P)), np.zeros((4, P))))


def test_reference_model_matches_torch_float64():
    """The multi-layer reference is itself torch's LSTM, to float64 rounding."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    for layers, bidir, proj, batch_first in [(2, True, 3, False), (3, False, 2, True),
                                             (2, True, 0, True)]:
        torch.manual_seed(layers + proj)
        tl = torch.nn.LSTM(D, H, layers, bidirectional=bidir, proj_size=proj,
                           batch_first=batch_first, dtype=torch.float64)
        sd = {k: v.detach().numpy() for k, v in tl.state_dict().items()}
        dirs = 2 if bidir else 1
        x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
        hx = (rng.standard_normal((layers * dirs, B, proj or H)),
              rng.standard_normal((layers * dirs, B, H)))
        ref = reference_model(sd, x, hx, batch_first=batch_first)
        with torch.no_grad():
            out, (h, c) = tl(torch.from_numpy(x), tuple(map(torch.from_numpy, hx)))
        for a, b in [(ref[0], out), (ref[1][0], h), (ref[1][1], c)]:
            np.testing.assert_allclose(a, b.numpy(), atol=1e-13, rtol=1e-13)
