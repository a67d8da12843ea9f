"""Models pickle (every protocol) and deep-copy; the copy is independent and gives
bit-identical outputs."""

import copy
import pickle

import numpy as np
import pytest

import cylstm
from testutil import check_against_reference, random_state


def _outputs_equal(a, b, x, hx):
    ra, rb = a(x, hx), b(x, hx)
    np.testing.assert_array_equal(ra[0], rb[0])
    np.testing.assert_array_equal(ra[1][0], rb[1][0])
    np.testing.assert_array_equal(ra[1][1], rb[1][1])
    assert ra[0].dtype == rb[0].dtype


def _same_model(a, b):
    assert type(a) is type(b)
    for attr in ("input_size", "hidden_size", "bias", "batch_first"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert np.dtype(a.dtype) == np.dtype(b.dtype)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype
        np.testing.assert_array_equal(sa[k], sb[k])


CONFIGS = [dict(bias=True, batch_first=False), dict(bias=False, batch_first=True)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["bias", "nobias-batch_first"])
@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol, cfg, dtype, rng):
    D, H, T, B = 3, 5, 9, 4
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0, **cfg)
    # change the weights after construction: the pickle must carry the current ones
    model.load_state_dict({k: v * 1.5 for k, v in model.state_dict().items()})
    clone = pickle.loads(pickle.dumps(model, protocol=protocol))
    _same_model(model, clone)
    x = rng.standard_normal((B, T, D) if cfg["batch_first"] else (T, B, D))
    hx = random_state(rng, (1, B, H), dtype)
    _outputs_equal(model, clone, x, hx)
    check_against_reference(clone, x, hx)


def test_pickle_is_independent(dtype, rng):
    model = cylstm.LSTM(3, 4, dtype=dtype, seed=0)
    clone = pickle.loads(pickle.dumps(model))
    clone.weight_hh_l0[...] = 0
    assert np.abs(model.weight_hh_l0).max() > 0


@pytest.mark.parametrize("cfg", CONFIGS, ids=["bias", "nobias-batch_first"])
def test_deepcopy(cfg, dtype, rng):
    D, H, T, B = 4, 6, 7, 2
    model = cylstm.LSTM(D, H, dtype=dtype, seed=1, **cfg)
    clone = copy.deepcopy(model)
    _same_model(model, clone)
    x = rng.standard_normal((B, T, D) if cfg["batch_first"] else (T, B, D))
    hx = random_state(rng, (1, B, H), dtype)
    _outputs_equal(model, clone, x, hx)
    for name in model.state_dict():
        assert not np.shares_memory(getattr(model, name), getattr(clone, name)), name
    before = model(x, hx)[0]
    clone.weight_ih_l0[...] = 0
    np.testing.assert_array_equal(model(x, hx)[0], before)
    assert not np.array_equal(clone(x, hx)[0], before)


def test_pickled_model_in_a_container(rng):
    models = [cylstm.LSTM(2, 3, seed=s, dtype=d) for s, d in [(0, np.float32),
                                                               (1, np.float64)]]
    clones = pickle.loads(pickle.dumps({"models": models}))["models"]
    x = rng.standard_normal((5, 2, 2))
    for m, c in zip(models, clones):
        _outputs_equal(m, c, x, random_state(rng, (1, 2, 3), m.dtype))


# --- a pickle is untrusted: unpickling validates as __init__ and load_state_dict do ----------


def _crafted(model, **changes):
    """The pickle state of `model` with config entries or parameters changed."""
    state = model.__getstate__()
    state["config"] = {**state["config"], **changes.pop("config", {})}
    state["parameters"] = {**state["parameters"], **changes.pop("parameters", {})}
    for name in changes.pop("drop", ()):
        del state["parameters"][name]
    return state


@pytest.mark.parametrize("changes, error, message", [
    (dict(config={"num_layers": 0}), ValueError, r"num_layers must be a positive int, got 0"),
    (dict(config={"dtype": "float16"}), TypeError, r"dtype must be float32 or float64"),
    (dict(config={"proj_size": 2}), ValueError, r"missing \['weight_hr_l0'\]"),
    (dict(config={"padding": "zero"}), ValueError, r"padding must be one of"),
    (dict(config={"hidden_size": 10**12}), ValueError, r"state_dict\['weight_ih_l0'\] must "
                                                         r"have shape \(4000000000000, 3\)"),
    (dict(config={"num_layers": 10**9}), ValueError, r"must hold the model's 4000000000 "),
    (dict(config={"speed": "fast"}), TypeError, r"config has unknown keys \['speed'\]"),
    (dict(parameters={"weight_hh_l0": np.zeros((3, 3))}), ValueError,
     r"state_dict\['weight_hh_l0'\] must have shape \(20, 5\), got \(3, 3\)"),
    (dict(parameters={"weight_hh_l0": "text"}), TypeError, r"weight_hh_l0.*real numbers"),
    (dict(drop=["bias_hh_l0"]), ValueError, r"missing \['bias_hh_l0'\]"),
])
def test_crafted_pickle_state_is_refused(changes, error, message):
    model = cylstm.LSTM(3, 5, seed=0)
    clone = cylstm.LSTM.__new__(cylstm.LSTM)
    with pytest.raises(error, match=message):
        clone.__setstate__(_crafted(model, **changes))
    # and through pickle itself
    payload = pickle.dumps(model)
    state = _crafted(model, **changes)

    class Crafted:
        def __reduce__(self):
            return (cylstm.LSTM.__new__, (cylstm.LSTM,), state)

    with pytest.raises(error, match=message):
        pickle.loads(pickle.dumps(Crafted()))
    assert pickle.loads(payload).hidden_size == 5


def test_a_weight_stored_as_a_list_is_converted_and_aligned():
    model = cylstm.LSTM(3, 5, seed=0)
    state = _crafted(model, parameters={"bias_ih_l0": model.bias_ih_l0.tolist()})
    clone = cylstm.LSTM.__new__(cylstm.LSTM)
    clone.__setstate__(state)
    assert clone.bias_ih_l0.dtype == np.float32 and clone.bias_ih_l0.ctypes.data % 64 == 0
    np.testing.assert_array_equal(clone.bias_ih_l0, model.bias_ih_l0)


def test_a_pickle_from_cylstm_0_1_still_loads(rng):
    """cylstm 0.1 pickled the instance __dict__: config attributes and the weights."""
    model = cylstm.LSTM(3, 5, num_layers=2, bidirectional=True, seed=0, num_threads=2)
    old_state = {**model.config(), "dtype": model.dtype, "num_threads": 2, **model.state_dict()}
    clone = cylstm.LSTM.__new__(cylstm.LSTM)
    clone.__setstate__(old_state)
    _same_model(model, clone)
    assert clone.num_threads == 2
    x = rng.standard_normal((4, 2, 3))
    _outputs_equal(model, clone, x, None)
