"""torch.nn.LSTM equivalence without torch: outputs stored by tests/golden/make_golden.py."""

import json
import os

import numpy as np
import pytest

import cylstm
from reference import reference_module
from testutil import tol

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "torch_lstm.npz")
PARAMS = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


def _load():
    with np.load(GOLDEN, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    cases = {}
    for key, value in data.items():
        if "/" in key:
            name, field = key.split("/", 1)
            cases.setdefault(name, {})[field] = value
    for case in cases.values():
        case["config"] = json.loads(str(case["config"]))
    return cases


CASES = _load()


def test_golden_file_is_complete():
    assert len(CASES) >= 6
    seen = {(c["config"]["dtype"], c["config"]["bias"], c["config"]["batch_first"])
            for c in CASES.values()}
    assert {d for d, _, _ in seen} == {"float32", "float64"}
    assert {b for _, b, _ in seen} == {True, False}
    assert {f for _, _, f in seen} == {True, False}
    assert any(c["config"]["unbatched"] for c in CASES.values())
    assert any("h0" not in c for c in CASES.values())
    assert os.path.getsize(GOLDEN) < 200_000


def _model(case):
    cfg = case["config"]
    model = cylstm.LSTM(cfg["input_size"], cfg["hidden_size"], bias=cfg["bias"],
                        batch_first=cfg["batch_first"], dtype=np.dtype(cfg["dtype"]), seed=0)
    model.load_state_dict({k: case[k] for k in PARAMS if k in case})
    return model


def _hx(case):
    return (case["h0"], case["c0"]) if "h0" in case else None


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_matches_golden(name):
    case = CASES[name]
    dtype = np.dtype(case["config"]["dtype"])
    assert case["output"].dtype == dtype
    model = _model(case)
    hx = _hx(case)
    out, (h_n, c_n) = model(case["x"], hx) if hx else model(case["x"])
    for got, key in [(out, "output"), (h_n, "h_n"), (c_n, "c_n")]:
        assert got.dtype == dtype and got.shape == case[key].shape, key
        np.testing.assert_allclose(got, case[key], err_msg=key, **tol(dtype))
    assert np.abs(case["output"]).max() > 1e-3


@pytest.mark.parametrize("name", sorted(CASES))
def test_functional_matches_golden(name):
    case = CASES[name]
    cfg = case["config"]
    dtype = np.dtype(cfg["dtype"])
    x = case["x"]
    if cfg["batch_first"] and not cfg["unbatched"]:
        x = x.transpose(1, 0, 2)
    h0 = c0 = None
    if "h0" in case:   # (1, B, H) -> (B, H); (1, H) -> (H,)
        h0, c0 = case["h0"][0], case["c0"][0]
    out, h_n, c_n = cylstm.lstm(x, case["weight_ih_l0"], case["weight_hh_l0"],
                                case.get("bias_ih_l0"), case.get("bias_hh_l0"), h0, c0)
    exp_out = case["output"]
    if cfg["batch_first"] and not cfg["unbatched"]:
        exp_out = exp_out.transpose(1, 0, 2)
    np.testing.assert_allclose(out, exp_out, **tol(dtype))
    np.testing.assert_allclose(h_n, case["h_n"][0], **tol(dtype))
    np.testing.assert_allclose(c_n, case["c_n"][0], **tol(dtype))
    assert out.dtype == h_n.dtype == dtype


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_matches_golden(name):
    """The float64 reference agrees with torch too: the truth is checked against torch."""
    case = CASES[name]
    cfg = case["config"]
    dtype = np.dtype(cfg["dtype"])
    params = {k: case[k] for k in PARAMS if k in case}
    out, (h_n, c_n) = reference_module(params, case["x"], _hx(case),
                                       batch_first=cfg["batch_first"])
    np.testing.assert_allclose(out, case["output"], **tol(dtype))
    np.testing.assert_allclose(h_n, case["h_n"], **tol(dtype))
    np.testing.assert_allclose(c_n, case["c_n"], **tol(dtype))
