"""torch.nn.LSTM equivalence without torch: outputs stored by tests/golden/make_golden.py.
Single-layer cases, plus stacked / bidirectional / projected / variable-length ones (their
config has num_layers, bidirectional, proj_size; some store lengths: torch packed sequences)."""

import os

import numpy as np
import pytest

import cylstm
from reference import reference_model, reference_module
from testutil import load_golden_cases, tol

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "torch_lstm.npz")
PARAMS = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


CASES = load_golden_cases("torch_lstm.npz")


def _is_single(case):
    cfg = case["config"]
    return (cfg.get("num_layers", 1) == 1 and not cfg.get("bidirectional", False)
            and not cfg.get("proj_size", 0) and "lengths" not in case)


SINGLE = sorted(name for name, case in CASES.items() if _is_single(case))
STACKED = sorted(name for name, case in CASES.items() if not _is_single(case))
WITH_LENGTHS = [name for name in STACKED if "lengths" in CASES[name]]


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


def _params(case):
    """The case's torch state dict: every stored array named like an LSTM parameter."""
    return {k: v for k, v in case.items() if k.startswith(("weight_", "bias_"))}


def _model(case):
    cfg = case["config"]
    model = cylstm.LSTM(cfg["input_size"], cfg["hidden_size"], cfg.get("num_layers", 1),
                        bias=cfg["bias"], batch_first=cfg["batch_first"],
                        bidirectional=cfg.get("bidirectional", False),
                        proj_size=cfg.get("proj_size", 0), dtype=np.dtype(cfg["dtype"]),
                        seed=0)
    model.load_state_dict(_params(case))
    return model


def _hx(case):
    return (case["h0"], case["c0"]) if "h0" in case else None


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_matches_golden(name):
    case = CASES[name]
    dtype = np.dtype(case["config"]["dtype"])
    assert case["output"].dtype == dtype
    model = _model(case)
    out, (h_n, c_n) = model(case["x"], _hx(case), case.get("lengths"))
    for got, key in [(out, "output"), (h_n, "h_n"), (c_n, "c_n")]:
        assert got.dtype == dtype and got.shape == case[key].shape, key
        np.testing.assert_allclose(got, case[key], err_msg=key, **tol(dtype))
    assert np.abs(case["output"]).max() > 1e-3


@pytest.mark.parametrize("name", SINGLE)
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


@pytest.mark.parametrize("name", SINGLE)
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


# --- stacked, bidirectional, projected, variable-length cases ----------------------------


def test_golden_file_covers_stacked_cases():
    configs = [CASES[name]["config"] for name in STACKED]
    assert len(STACKED) >= 5
    assert {c["dtype"] for c in configs} == {"float32", "float64"}
    assert any(c["num_layers"] >= 3 for c in configs)
    assert any(c["bidirectional"] and c["proj_size"] and c["num_layers"] >= 2
               for c in configs)
    assert any(c["batch_first"] for c in configs) and any(not c["bias"] for c in configs)
    assert any(c["unbatched"] for c in configs)
    with_lengths = [CASES[name] for name in WITH_LENGTHS]
    assert any(c["config"]["bidirectional"] and c["config"]["proj_size"] for c in with_lengths)
    assert any("h0" not in c for c in with_lengths)
    for case in with_lengths:
        lengths = case["lengths"]
        T = case["x"].shape[1 if case["config"]["batch_first"] else 0]
        assert lengths.min() >= 1 and lengths.max() <= T
        assert lengths.min() < T and not np.all(np.diff(lengths) <= 0)  # padded, unsorted


@pytest.mark.parametrize("name", WITH_LENGTHS)
def test_stacked_golden_padding_is_zero(name):
    """What torch's pad_packed_sequence gives past each row's length: zeros."""
    case = CASES[name]
    out = case["output"]
    if case["config"]["batch_first"]:
        out = out.transpose(1, 0, 2)
    for b, length in enumerate(case["lengths"]):
        assert np.all(out[length:, b] == 0)


@pytest.mark.parametrize("name", STACKED)
def test_reference_model_matches_golden(name):
    """The multi-layer float64 reference agrees with torch too."""
    case = CASES[name]
    cfg = case["config"]
    dtype = np.dtype(cfg["dtype"])
    out, (h_n, c_n) = reference_model(_params(case), case["x"], _hx(case), case.get("lengths"),
                                      batch_first=cfg["batch_first"])
    for got, key in [(out, "output"), (h_n, "h_n"), (c_n, "c_n")]:
        assert got.shape == case[key].shape, key
        np.testing.assert_allclose(got, case[key], err_msg=key, **tol(dtype))


@pytest.mark.parametrize("name", STACKED)
def test_from_torch_state_dict_matches_golden(name):
    """LSTM.from_torch infers the architecture from the stored arrays (no torch needed)."""
    case = CASES[name]
    cfg = case["config"]
    dtype = np.dtype(cfg["dtype"])
    model = cylstm.LSTM.from_torch(_params(case), batch_first=cfg["batch_first"])
    assert (model.num_layers, model.bidirectional, model.proj_size, model.bias,
            model.dtype) == (cfg["num_layers"], cfg["bidirectional"], cfg["proj_size"],
                             cfg["bias"], dtype)
    out, (h_n, c_n) = model(case["x"], _hx(case), case.get("lengths"))
    for got, key in [(out, "output"), (h_n, "h_n"), (c_n, "c_n")]:
        assert got.dtype == dtype and got.shape == case[key].shape, key
        np.testing.assert_allclose(got, case[key], err_msg=key, **tol(dtype))


@pytest.mark.parametrize("name", STACKED)
def test_stacked_golden_round_trips_through_a_file(name, tmp_path):
    case = CASES[name]
    model = _model(case)
    cylstm.save(tmp_path / "m.npz", model)
    loaded = cylstm.load(tmp_path / "m.npz")
    a = model(case["x"], _hx(case), case.get("lengths"))
    b = loaded(case["x"], _hx(case), case.get("lengths"))
    for x, y in [(a[0], b[0]), (a[1][0], b[1][0]), (a[1][1], b[1][1])]:
        np.testing.assert_array_equal(x, y)
