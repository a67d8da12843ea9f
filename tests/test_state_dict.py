"""state_dict() / load_state_dict(): names in torch order, copies both ways, conversion to
the model dtype, and precise errors for missing, unexpected and wrong-shape entries."""

import re

import numpy as np
import pytest

import cylstm
from testutil import check_against_reference

NAMES = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


def _numbers(msg):
    return [int(n) for n in re.findall(r"\d+", msg)]


def _contains_run(msg, shape):
    """The numbers of `shape` appear consecutively in msg, whatever the formatting."""
    nums, shape = _numbers(msg), list(shape)
    return any(nums[i:i + len(shape)] == shape for i in range(len(nums) - len(shape) + 1))


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_names_order_values(bias, dtype):
    model = cylstm.LSTM(3, 5, bias=bias, dtype=dtype, seed=0)
    sd = model.state_dict()
    assert list(sd) == (NAMES if bias else NAMES[:2])
    for name, value in sd.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(value, getattr(model, name))


def test_state_dict_returns_copies(dtype, rng):
    model = cylstm.LSTM(3, 5, dtype=dtype, seed=0)
    x = rng.standard_normal((4, 2, 3))
    before = model(x)[0]
    sd = model.state_dict()
    for name, value in sd.items():
        assert not np.shares_memory(value, getattr(model, name)), name
        value[...] = 7.0
    np.testing.assert_array_equal(model(x)[0], before)
    assert not np.array_equal(model.state_dict()["weight_ih_l0"], sd["weight_ih_l0"])


@pytest.mark.parametrize("bias", [True, False])
def test_load_state_dict_transfers_the_model(bias, dtype, rng):
    src = cylstm.LSTM(4, 6, bias=bias, dtype=dtype, seed=1)
    dst = cylstm.LSTM(4, 6, bias=bias, dtype=dtype, seed=2)
    x = rng.standard_normal((7, 3, 4))
    assert not np.allclose(src(x)[0], dst(x)[0])
    dst.load_state_dict(src.state_dict())
    for name, value in src.state_dict().items():
        np.testing.assert_array_equal(getattr(dst, name), value)
        assert getattr(dst, name).dtype == np.dtype(dtype)
    a, (ha, ca) = src(x)
    b, (hb, cb) = dst(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ha, hb)
    np.testing.assert_array_equal(ca, cb)
    check_against_reference(dst, x)


def test_load_state_dict_copies_its_input(dtype, rng):
    model = cylstm.LSTM(3, 4, dtype=dtype, seed=0)
    sd = cylstm.LSTM(3, 4, dtype=dtype, seed=5).state_dict()
    model.load_state_dict(sd)
    x = rng.standard_normal((5, 2, 3))
    before = model(x)[0]
    for value in sd.values():
        value[...] = 0.0
    np.testing.assert_array_equal(model(x)[0], before)
    assert np.abs(model.weight_hh_l0).max() > 0


def test_load_state_dict_converts(dtype, rng):
    """Lists, float64 into float32, ints: converted to the model dtype."""
    D, H = 2, 3
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    w_ih = rng.standard_normal((4 * H, D))
    sd = {"weight_ih_l0": w_ih.tolist(),
          "weight_hh_l0": rng.standard_normal((4 * H, H)).astype(np.float64),
          "bias_ih_l0": np.arange(4 * H) - 5,                 # int64
          "bias_hh_l0": rng.standard_normal(4 * H).astype(np.float32)}
    model.load_state_dict(sd)
    for name, value in sd.items():
        got = getattr(model, name)
        assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(got, np.asarray(value).astype(dtype))
    check_against_reference(model, rng.standard_normal((4, 2, D)))


def test_load_state_dict_accepts_readonly_and_views(dtype, rng):
    D, H = 3, 4
    big = rng.standard_normal((8 * H, 2 * D))
    sd = {"weight_ih_l0": big[::2, ::2], "weight_hh_l0": np.asfortranarray(
        rng.standard_normal((4 * H, H))), "bias_ih_l0": rng.standard_normal(8 * H)[::2],
        "bias_hh_l0": rng.standard_normal(4 * H)}
    for v in sd.values():
        v.flags.writeable = False
    keep = {k: v.copy() for k, v in sd.items()}
    model = cylstm.LSTM(D, H, dtype=dtype, seed=0)
    model.load_state_dict(sd)
    for name in sd:
        np.testing.assert_array_equal(getattr(model, name), keep[name].astype(dtype))
        np.testing.assert_array_equal(sd[name], keep[name])
    check_against_reference(model, rng.standard_normal((5, 2, D)))


def test_load_state_dict_from_any_mapping(rng):
    from collections import OrderedDict

    src = cylstm.LSTM(2, 3, seed=9)
    dst = cylstm.LSTM(2, 3, seed=10)
    dst.load_state_dict(OrderedDict(reversed(list(src.state_dict().items()))))
    x = rng.standard_normal((3, 1, 2))
    np.testing.assert_array_equal(dst(x)[0], src(x)[0])


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("missing", NAMES)
def test_missing_key(missing):
    model = cylstm.LSTM(3, 5, seed=0)
    sd = model.state_dict()
    del sd[missing]
    with pytest.raises((KeyError, ValueError)) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert missing in msg and re.search(r"missing", msg, re.I), msg


def test_unexpected_key():
    model = cylstm.LSTM(3, 5, seed=0)
    sd = model.state_dict()
    sd["weight_hr_l0"] = np.zeros((20, 5), np.float32)
    with pytest.raises((KeyError, ValueError), match="weight_hr_l0") as info:
        model.load_state_dict(sd)
    assert re.search(r"unexpected|extra|unknown", str(info.value), re.I), str(info.value)


def test_bias_keys_unexpected_without_bias():
    model = cylstm.LSTM(3, 5, bias=False, seed=0)
    sd = cylstm.LSTM(3, 5, bias=True, seed=0).state_dict()
    with pytest.raises((KeyError, ValueError), match="bias_ih_l0") as info:
        model.load_state_dict(sd)
    assert "bias_hh_l0" in str(info.value)
    assert re.search(r"unexpected|extra|unknown", str(info.value), re.I), str(info.value)


def test_bias_keys_missing_with_bias():
    model = cylstm.LSTM(3, 5, bias=True, seed=0)
    sd = cylstm.LSTM(3, 5, bias=False, seed=0).state_dict()
    with pytest.raises((KeyError, ValueError), match="bias_ih_l0") as info:
        model.load_state_dict(sd)
    assert "bias_hh_l0" in str(info.value)
    assert re.search(r"missing", str(info.value), re.I), str(info.value)


@pytest.mark.parametrize("name,bad_shape", [
    ("weight_ih_l0", (20, 4)),    # D = 3 expected
    ("weight_ih_l0", (3, 20)),    # transposed
    ("weight_ih_l0", (60,)),      # flattened
    ("weight_hh_l0", (20, 6)),
    ("weight_hh_l0", (16, 5)),
    ("bias_ih_l0", (21,)),
    ("bias_hh_l0", (1, 20)),      # would broadcast: must not
    ("bias_hh_l0", ()),           # scalar: would broadcast: must not
])
def test_wrong_shape(name, bad_shape):
    model = cylstm.LSTM(3, 5, seed=0)
    expected = model.state_dict()[name].shape
    sd = model.state_dict()
    sd[name] = np.ones(bad_shape, np.float32)
    with pytest.raises(ValueError, match=name) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert _contains_run(msg, expected), msg
    assert _contains_run(msg, bad_shape), msg


@pytest.mark.parametrize("bad", ["complex", "strings", "object"])
def test_non_real_values_rejected(bad):
    model = cylstm.LSTM(2, 3, seed=0)
    sd = model.state_dict()
    w = sd["weight_hh_l0"]
    sd["weight_hh_l0"] = {"complex": w.astype(np.complex64),
                          "strings": np.full(w.shape, "0.5"),
                          "object": np.full(w.shape, None, dtype=object)}[bad]
    with pytest.raises((TypeError, ValueError), match="weight_hh_l0"):
        model.load_state_dict(sd)


# --- hostile state dicts: from_torch reads the architecture off names and shapes ---------------


@pytest.mark.parametrize("bad, message", [
    (np.zeros(16), r"weight_ih_l0'\] must have shape \(4 \* hidden_size, input_size\).*\(16,\)"),
    (np.zeros(()), r"weight_ih_l0'\] must have shape \(4 \* hidden_size, input_size\).*\(\)"),
    (np.zeros((3, 3)), r"must have shape \(4 \* hidden_size, input_size\).*\(3, 3\)"),
    (None, r"weight_ih_l0'\] must be an array, got NoneType"),
    ([[1.0, 2.0], [3.0]], r"weight_ih_l0'\] is not an array"),
])
def test_from_torch_state_dict_with_a_malformed_first_weight(bad, message):
    state = cylstm.LSTM(3, 4, seed=0).state_dict()
    state["weight_ih_l0"] = bad
    with pytest.raises(ValueError, match=message):
        cylstm.LSTM.from_torch(state)


def test_from_torch_state_dict_with_a_far_layer_is_refused_at_once():
    """One extra key weight_ih_l999999999 must not build a billion-layer model."""
    state = cylstm.LSTM(3, 4, seed=0).state_dict()
    state["weight_ih_l999999999"] = np.zeros((16, 3))
    with pytest.raises(ValueError, match=r"number its layers 0, 1, 2, ... without gaps"):
        cylstm.LSTM.from_torch(state)


def test_load_state_dict_of_a_huge_claimed_model_is_refused_by_count():
    config = cylstm.LSTM(3, 4, seed=0).config()
    config["num_layers"] = 10**9  # as a crafted pickle or header would claim
    with pytest.raises(ValueError, match=r"must hold the model's 4000000000 parameters, got 4"):
        cylstm.LSTM._from_parts(config, cylstm.LSTM(3, 4, seed=0).state_dict())


@pytest.mark.parametrize("bad", [None, [1, 2], "weights"])
def test_load_state_dict_of_a_non_mapping(bad):
    with pytest.raises(TypeError, match=r"state_dict must be a mapping of parameter names to "
                                        r"arrays, got " + type(bad).__name__):
        cylstm.LSTM(3, 4, seed=0).load_state_dict(bad)
