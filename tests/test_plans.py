"""Plans: every kernel strategy gives the reference's numbers for every option, the modes
do what they say, wisdom files are kept per machine, and first calls from threads agree."""

import itertools
import json
import threading

import numpy as np
import pytest

import cylstm
from cylstm import _plan, plans
from modelutil import check_model, random_hx, random_input, random_lengths
from testutil import tol

OPTIONS = list(itertools.product([1, 2], [False, True], [0, 2]))  # layers, bidirectional, proj


@pytest.fixture
def mode():
    """Set the plan mode for one test; the suite's mode comes back afterwards."""
    before = plans.get_mode()
    yield plans.set_mode
    plans.set_mode(before)


@pytest.mark.parametrize("strategy", cylstm.plans.STRATEGIES)
@pytest.mark.parametrize("layers, bidirectional, proj", OPTIONS)
@pytest.mark.parametrize("batch, with_lengths", [(1, False), (3, False), (3, True)])
def test_every_strategy_matches_the_reference(mode, strategy, layers, bidirectional, proj,
                                              batch, with_lengths, dtype):
    mode(strategy)
    rng = np.random.default_rng(layers * 7 + batch)
    model = cylstm.LSTM(4, 5, layers, bidirectional=bidirectional, proj_size=proj,
                        dtype=dtype, seed=3)
    x = random_input(rng, model, 9, batch)
    lengths = random_lengths(rng, batch, 9) if with_lengths else None
    check_model(model, x, random_hx(rng, model, batch), lengths)


@pytest.mark.parametrize("strategy", cylstm.plans.STRATEGIES)
@pytest.mark.parametrize("padding", ["zeros", "carry"])
def test_every_strategy_with_lengths_and_training(mode, strategy, padding, dtype):
    """Lengths, both directions and the training pass under each strategy, against the
    rule's plan (itself checked against the reference and autograd elsewhere)."""
    rng = np.random.default_rng(5)
    model = cylstm.LSTM(3, 4, 2, bidirectional=True, padding=padding, dtype=dtype, seed=4)
    x, lengths = random_input(rng, model, 8, 4), random_lengths(rng, 4, 8)
    grad = rng.standard_normal((8, 4, 8))
    mode("estimate")
    expected_out, expected_state = model(x, lengths=lengths)
    _, _, backward = model.forward_train(x, lengths=lengths)
    expected_grads = backward(grad)[2]
    mode(strategy)
    out, state = model(x, lengths=lengths)
    _, _, backward = model.forward_train(x, lengths=lengths)
    grads = backward(grad)[2]
    np.testing.assert_allclose(out, expected_out, **tol(dtype))
    np.testing.assert_allclose(state[1], expected_state[1], **tol(dtype))
    for name, value in grads.items():
        np.testing.assert_allclose(value, expected_grads[name], **tol(dtype), err_msg=name)


def test_estimate_follows_the_rule(mode):
    mode("estimate")
    assert plans.plan_for(np.float32, 1000, 1, 32, 64).strategy == "rows-t"
    assert plans.plan_for(np.float32, 10, 1, 32, 64).strategy == "rows"
    assert plans.plan_for(np.float32, 100, 32, 128, 256).strategy == "columns"
    assert plans.plan_for(np.float32, 100, 32, 128, 256).source == "rule"


def test_a_fixed_strategy_is_used_for_every_shape(mode):
    mode("rows-gemm")
    plan = plans.plan_for(np.float64, 50, 7, 3, 4)
    assert (plan.strategy, plan.source) == ("rows-gemm", "fixed")


def test_measure_times_the_candidates_within_its_budget(mode):
    mode("measure")
    plan = plans.plan_for(np.float32, 1000, 1, 32, 64)
    assert plan.source == "measured"
    assert set(plan.seconds_per_step) == set(plans.STRATEGIES)
    assert all(0 <= seconds < 0.01 for seconds in plan.seconds_per_step.values())
    rule = _plan.rule_plan(_plan.shape_of(np.float32, 1000, 1, 32, 64, 0))
    best = min(plan.seconds_per_step, key=plan.seconds_per_step.get)
    # The rule's strategy stays unless another beat it by the margin.
    if plan.strategy != rule.strategy:
        assert plan.strategy == best
        assert plan.seconds_per_step[best] < (1 - _plan.MARGIN) * \
            plan.seconds_per_step[rule.strategy]
    assert plans.plan_for(np.float32, 1000, 1, 32, 64) is plan  # measured once
    assert "measured" in plans.describe()


def test_a_bad_mode_is_refused(mode):
    with pytest.raises(ValueError, match="the plan mode must be one of"):
        mode("fastest")


def test_a_bad_environment_variable_warns_and_takes_the_default(monkeypatch):
    monkeypatch.setenv(_plan.ENVIRONMENT_VARIABLE, "fastest")
    with pytest.warns(RuntimeWarning, match="CYLSTM_PLAN"):
        planner = _plan._planner_from_environment()
    assert planner.mode == _plan.DEFAULT_MODE == "estimate"


def test_wisdom_round_trip_and_other_machines(mode, tmp_path):
    mode("measure")
    plans.plan_for(np.float32, 1000, 1, 32, 64)
    path = tmp_path / "wisdom.json"
    plans.save_wisdom(path)
    saved = json.loads(path.read_text())
    assert saved["machine"] == _plan.machine_key() and len(saved["plans"]) == 1
    mode("measure")  # forgets
    assert plans.load_wisdom(path) == 1
    assert next(iter(plans.plans().values())).source == "wisdom"

    saved["machine"]["cpu"] = "another CPU"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(saved))
    with pytest.warns(RuntimeWarning, match="made on another machine"):
        assert plans.load_wisdom(other) == 0
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="cannot read wisdom"):
        assert plans.load_wisdom(damaged) == 0
    saved["machine"] = _plan.machine_key()
    saved["plans"][0]["strategy"] = "warp-drive"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(saved))
    with pytest.warns(RuntimeWarning, match="unknown strategy"):
        assert plans.load_wisdom(bad) == 0


def test_first_calls_from_threads_are_safe_and_agree(mode):
    mode("measure")
    model = cylstm.LSTM(6, 12, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((40, 3, 6))
    results, errors = [], []
    barrier = threading.Barrier(6)

    def call():
        try:
            barrier.wait(timeout=30)
            results.append(model(x)[0])
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
    assert len(plans.plans()) == 1


def test_the_estimate_follows_the_blas_core():
    """The batch-1 rule differs on OpenBLAS's AVX-512 kernels, as measured there
    (the issue's Intel Xeon figures); batches take the column layout on every core."""
    rule = _plan.rule_strategy
    assert [rule(1000, 1, 64, "Haswell"), rule(10, 1, 64, "Haswell")] == ["rows-t", "rows"]
    assert [rule(1000, 1, 64, "SkylakeX"), rule(10, 1, 64, "SkylakeX")] == \
        ["rows-t-gemm", "rows-gemm"]
    assert rule(500, 1, 256, "SkylakeX") == "rows-gemm"
    assert rule(500, 1, 512, "SkylakeX") == rule(500, 1, 512, "Haswell") == "rows-t"
    assert {rule(100, batch, 256, core) for batch in (2, 32) for core in
            ("SkylakeX", "Haswell", "")} == {"columns"}


def test_the_blas_core_is_scipys():
    pytest.importorskip("threadpoolctl")
    info = _plan.scipy_blas_info()
    assert info.get("user_api") == "blas"
    assert _plan.blas_core() == (info.get("architecture") or "")
    assert _plan.machine_key()["blas"]["version"] == info.get("version")
