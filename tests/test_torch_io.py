"""LSTM.from_torch (a torch.nn.LSTM module, or a state dict of tensors or arrays with the
architecture read off the names and shapes) and the way back: model.state_dict() loads into
torch with torch.from_numpy. Outputs are compared with torch itself, including packed sequences
(skipped only when torch is not installed; CI installs it)."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cylstm  # noqa: E402
from modelutil import random_hx, random_input, random_lengths  # noqa: E402
from testutil import tol  # noqa: E402

D, H, T, B = 4, 6, 7, 3
# torch warns that its oneDNN path has no projections and falls back: harmless here
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
ARCHITECTURES = list(itertools.product([1, 2, 3], [False, True], [0, 2], [True, False]))


def _aid(a):
    layers, bidir, proj, bias = a
    return f"L{layers}-{'bi' if bidir else 'uni'}-p{proj}-{'bias' if bias else 'nobias'}"


def _torch_lstm(layers=2, bidir=True, proj=2, bias=True, batch_first=False,
                dtype=np.float32, seed=0, **kwargs):
    torch.manual_seed(seed)
    return torch.nn.LSTM(D, H, layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidir, proj_size=proj,
                         dtype=TORCH_DTYPE[np.dtype(dtype)], **kwargs)


def _torch_run(tl, x, hx=None, lengths=None):
    """torch's output, (h_n, c_n) as NumPy; with lengths through packed sequences."""
    tx = torch.from_numpy(np.ascontiguousarray(x))
    if lengths is not None:
        tx = torch.nn.utils.rnn.pack_padded_sequence(
            tx, torch.from_numpy(np.asarray(lengths)), batch_first=tl.batch_first,
            enforce_sorted=False)
    with torch.no_grad():
        args = (tx,) if hx is None else (tx, tuple(torch.from_numpy(a) for a in hx))
        out, (h, c) = tl(*args)
    if lengths is not None:
        out = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=tl.batch_first, total_length=x.shape[1 if tl.batch_first else 0])[0]
    return out.numpy(), (h.numpy(), c.numpy())


def _compare(ours, theirs, dtype):
    t = {k: 2 * v for k, v in tol(dtype).items()}  # both sides round
    for name, a, b in zip(["output", "h_n", "c_n"], [ours[0], *ours[1]],
                          [theirs[0], *theirs[1]]):
        assert a.shape == b.shape and a.dtype == b.dtype == np.dtype(dtype), (name, a.shape,
                                                                              b.shape)
        np.testing.assert_allclose(a, b, err_msg=name, **t)


def _same_weights(model, tl):
    theirs = tl.state_dict()
    ours = model.state_dict()
    assert list(ours) == list(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == model.dtype
        np.testing.assert_array_equal(ours[name], value.numpy().astype(model.dtype))


# --- from a module ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=_aid)
def test_from_module(arch, dtype):
    layers, bidir, proj, bias = arch
    tl = _torch_lstm(layers, bidir, proj, bias, dtype=dtype, seed=layers + proj)
    model = cylstm.LSTM.from_torch(tl)
    assert (model.input_size, model.hidden_size, model.num_layers, model.bidirectional,
            model.proj_size, model.bias, model.batch_first) == (D, H, layers, bidir, proj,
                                                                bias, False)
    assert model.dtype == np.dtype(dtype)   # float64 for a double module, else float32
    _same_weights(model, tl)
    rng = np.random.default_rng(layers)
    x = random_input(rng, model, T, B, dtype)
    hx = random_hx(rng, model, B, dtype)
    _compare(model(x, hx), _torch_run(tl, x, hx), dtype)
    lengths = random_lengths(rng, B, T)
    _compare(model(x, hx, lengths), _torch_run(tl, x, hx, lengths), dtype)


@pytest.mark.parametrize("batch_first", [False, True])
def test_from_module_keeps_batch_first_unless_overridden(batch_first):
    tl = _torch_lstm(batch_first=batch_first)
    assert cylstm.LSTM.from_torch(tl).batch_first == batch_first
    assert cylstm.LSTM.from_torch(tl, batch_first=not batch_first).batch_first \
        == (not batch_first)
    model = cylstm.LSTM.from_torch(tl)
    rng = np.random.default_rng(0)
    x = random_input(rng, model, T, B, np.float32)
    _compare(model(x), _torch_run(tl, x), np.float32)


def test_from_module_config_overrides():
    tl = _torch_lstm(dtype=np.float32)
    model = cylstm.LSTM.from_torch(tl, dtype=np.float64, padding="carry")
    assert model.dtype == np.float64 and model.padding == "carry"
    _same_weights(model, tl)
    # architecture arguments that agree with the module are accepted
    same = cylstm.LSTM.from_torch(tl, num_layers=2, bidirectional=True, proj_size=2,
                                  hidden_size=H, input_size=D, bias=True)
    assert same.config() == cylstm.LSTM.from_torch(tl).config()


def test_from_module_copies_the_weights():
    tl = _torch_lstm()
    model = cylstm.LSTM.from_torch(tl)
    before = model.state_dict()
    with torch.no_grad():
        for p in tl.parameters():
            p.mul_(2.0)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_from_module_with_grad_and_dropout_in_eval_mode():
    """Parameters that require grad are fine; dropout is kept in the configuration (it acts
    in forward_train only: a call computes what torch in eval mode does) and goes back."""
    tl = _torch_lstm(3, True, 2, dropout=0.5, dtype=np.float64)
    assert any(p.requires_grad for p in tl.parameters())
    tl.eval()
    model = cylstm.LSTM.from_torch(tl)
    assert model.dropout == 0.5 and model.config()["dropout"] == 0.5
    assert model.to_torch().dropout == 0.5
    x = random_input(np.random.default_rng(1), model, T, B)
    _compare(model(x), _torch_run(tl, x), np.float64)


# --- from a state dict -------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["tensors", "arrays"])
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=_aid)
def test_from_state_dict_infers_the_architecture(arch, values):
    layers, bidir, proj, bias = arch
    tl = _torch_lstm(layers, bidir, proj, bias, dtype=np.float64, seed=proj)
    sd = tl.state_dict()
    if values == "arrays":
        sd = {k: v.numpy() for k, v in sd.items()}
    model = cylstm.LSTM.from_torch(sd)
    assert (model.input_size, model.hidden_size, model.num_layers, model.bidirectional,
            model.proj_size, model.bias) == (D, H, layers, bidir, proj, bias)
    assert model.dtype == np.float64
    _same_weights(model, tl)


def test_from_state_dict_float32_and_config():
    tl = _torch_lstm(2, True, 2, dtype=np.float32)
    sd = tl.state_dict()
    model = cylstm.LSTM.from_torch(sd)
    assert model.dtype == np.float32 and not model.batch_first and model.padding == "zeros"
    model = cylstm.LSTM.from_torch(sd, batch_first=True, padding="carry", dtype=np.float64)
    assert model.batch_first and model.padding == "carry" and model.dtype == np.float64
    _same_weights(model, tl)
    tl_bf = _torch_lstm(2, True, 2, batch_first=True, dtype=np.float64)
    tl_bf.load_state_dict({k: v.double() for k, v in sd.items()})
    x = random_input(np.random.default_rng(2), model, T, B)
    _compare(model(x), _torch_run(tl_bf, x), np.float64)


@pytest.mark.parametrize("how", ["keep_vars", "named_parameters"])
def test_from_parameters_that_require_grad(how):
    """A mapping of the module's Parameters (requires_grad=True) is a state dict too."""
    tl = _torch_lstm(2, True, 2)
    sd = tl.state_dict(keep_vars=True) if how == "keep_vars" else dict(tl.named_parameters())
    assert all(v.requires_grad for v in sd.values())
    model = cylstm.LSTM.from_torch(sd)
    _same_weights(model, tl)


def test_from_state_dict_in_any_order():
    tl = _torch_lstm(3, True, 2)
    sd = dict(reversed(list(tl.state_dict().items())))
    model = cylstm.LSTM.from_torch(sd)
    assert list(model.state_dict()) == list(tl.state_dict())
    _same_weights(model, tl)


@pytest.mark.parametrize("conflict", [
    dict(num_layers=3), dict(num_layers=1), dict(bidirectional=False), dict(proj_size=0),
    dict(proj_size=3), dict(hidden_size=H + 1), dict(input_size=D + 1), dict(bias=False)],
    ids=lambda c: "{}={}".format(*next(iter(c.items()))))
@pytest.mark.parametrize("source", ["module", "state_dict"])
def test_conflicting_architecture(conflict, source):
    tl = _torch_lstm(2, True, 2, bias=True)
    src = tl if source == "module" else tl.state_dict()
    key = next(iter(conflict))
    with pytest.raises(ValueError, match=key):
        cylstm.LSTM.from_torch(src, **conflict)


@pytest.mark.parametrize("module", ["GRU", "RNN"])
def test_other_recurrent_modules_refused(module):
    m = getattr(torch.nn, module)(D, H)
    with pytest.raises(TypeError, match=module):
        cylstm.LSTM.from_torch(m)


@pytest.mark.parametrize("bad", [None, 3, "weights.pt", [("weight_ih_l0", np.zeros((24, 4)))],
                                 torch.nn.Linear(3, 4)], ids=["None", "int", "str", "list",
                                                              "Linear"])
def test_not_a_module_or_state_dict(bad):
    with pytest.raises(TypeError):
        cylstm.LSTM.from_torch(bad)


def test_state_dict_of_something_else():
    with pytest.raises(ValueError, match="weight_ih_l0"):
        cylstm.LSTM.from_torch(torch.nn.Linear(3, 4).state_dict())
    with pytest.raises(ValueError, match="weight_ih_l0"):
        cylstm.LSTM.from_torch({})


def test_state_dict_with_a_missing_or_extra_entry():
    sd = dict(_torch_lstm(2, True, 2).state_dict())
    del sd["bias_hh_l1_reverse"]
    with pytest.raises(ValueError, match="bias_hh_l1_reverse"):
        cylstm.LSTM.from_torch(sd)
    sd = dict(_torch_lstm(2, False, 0).state_dict())
    sd["weight_ih_l1_reverse"] = torch.zeros(4 * H, H)
    with pytest.raises(ValueError):
        cylstm.LSTM.from_torch(sd)


# --- the way back ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a[0] != 3], ids=_aid)
def test_state_dict_loads_into_torch(arch, dtype):
    layers, bidir, proj, bias = arch
    model = cylstm.LSTM(D, H, layers, bidirectional=bidir, proj_size=proj, bias=bias,
                        batch_first=True, dtype=dtype, seed=7)
    tl = _torch_lstm(layers, bidir, proj, bias, batch_first=True, dtype=dtype, seed=99)
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    for name, value in tl.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), getattr(model, name))
    rng = np.random.default_rng(3)
    x = random_input(rng, model, T, B, dtype)
    hx = random_hx(rng, model, B, dtype)
    _compare(model(x, hx), _torch_run(tl, x, hx), dtype)
    lengths = random_lengths(rng, B, T)
    _compare(model(x, hx, lengths), _torch_run(tl, x, hx, lengths), dtype)


def test_round_trip_through_torch_is_exact():
    model = cylstm.LSTM(D, H, 2, bidirectional=True, proj_size=2, dtype=np.float64, seed=4)
    back = cylstm.LSTM.from_torch({k: torch.from_numpy(v)
                                   for k, v in model.state_dict().items()})
    assert back.config() == model.config()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(getattr(back, name), value)


def test_unbatched_matches_torch(dtype):
    tl = _torch_lstm(2, True, 2, dtype=dtype, seed=5)
    model = cylstm.LSTM.from_torch(tl)
    rng = np.random.default_rng(4)
    x = random_input(rng, model, T, None, dtype)
    hx = random_hx(rng, model, None, dtype)
    _compare(model(x, hx), _torch_run(tl, x, hx), dtype)


def test_an_lstm_cell_is_refused_with_a_clear_type_error():
    with pytest.raises(TypeError, match=r"source must be a torch.nn.LSTM, got a LSTMCell"):
        cylstm.LSTM.from_torch(torch.nn.LSTMCell(D, H))
