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


def test_measure_races_the_candidates_once(mode):
    mode("measure")
    plan = plans.plan_for(np.float32, 1000, 1, 32, 64)
    rule = _plan.rule_plan(_plan.shape_of(np.float32, 1000, 1, 32, 64, 0))
    assert plan.source == "measured"
    # One row: every row-layout product and the column layout's, the rule's first.
    assert set(plan.product_seconds) == set(plans.STRATEGIES) - {"columns-t"}
    assert 0 < plan.product_seconds[rule.strategy] < 0.01
    best = min(plan.product_seconds, key=plan.product_seconds.get)
    # The rule's strategy stays unless another beat it by the margin.
    if plan.strategy != rule.strategy:
        assert plan.strategy == best
        assert plan.product_seconds[best] < (1 - _plan.MARGIN) * \
            plan.product_seconds[rule.strategy]
    assert plans.plan_for(np.float32, 1000, 1, 32, 64) is plan  # measured once
    assert "measured" in plans.describe()
    # A batch races w_hh and its transposed copy in the rule's (column) layout.
    batched = plans.plan_for(np.float64, 64, 5, 3, 4)
    assert set(batched.product_seconds) == {"columns", "columns-t"}
    assert plans.plan_for(np.float32, 16, 1, 32, 64).source == "rule: too short to measure"


def test_a_model_call_races_then_keeps_the_winner(mode, dtype):
    """The first call of a shape runs the race inside its own kernel call; the
    next settles the plan and runs the winner; both give the reference's numbers."""
    mode("measure")
    rng = np.random.default_rng(8)
    model = cylstm.LSTM(5, 7, dtype=dtype, seed=1)
    x = random_input(rng, model, 200, 1)
    check_model(model, x)
    assert plans.plans() == {}  # raced, not yet settled
    check_model(model, x)
    (plan,) = plans.plans().values()
    assert plan.source == "measured" and plan.strategy in plan.product_seconds


RACED_CALLS = [  # (T, B, lengths?, reverse, projection, training)
    (300, 1, False, False, False, False), (300, 1, False, True, True, True),
    (40, 1, False, False, False, False), (60, 4, True, True, False, True),
    (60, 4, False, False, True, False), (60, 3, True, False, False, True)]


@pytest.mark.parametrize("steps, batch, with_lengths, reverse, projected, training", RACED_CALLS)
def test_a_raced_kernel_call_computes_what_the_rule_does(steps, batch, with_lengths, reverse,
                                                         projected, training, dtype):
    from cylstm import _lstm

    rng = np.random.default_rng(steps + batch)
    inputs, hidden, width = 6, 8, 5 if projected else 8

    def array(*shape, scale=0.3):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    x, w_ih, w_hh, bias = array(steps, batch, inputs, scale=1), array(32, inputs), \
        array(32, width), array(32)
    w_hr = array(width, hidden) if projected else None
    h0, c0 = array(batch, width), array(batch, hidden)
    lengths = random_lengths(rng, batch, steps) if with_lengths else None
    rule = _lstm.default_strategy(steps, batch)

    def run(race):
        h, c = h0.copy(), c0.copy()
        out = np.zeros((steps, batch, width), dtype)
        kept = (np.zeros((steps, batch, 32), dtype), np.zeros((steps, batch, hidden), dtype)) \
            if training else (None, None)
        winner = _lstm.forward_layer(x, w_ih, w_hh, bias, h, c, out, w_hr=w_hr, lengths=lengths,
                                     reverse=reverse, keep_act=kept[0], keep_c=kept[1],
                                     strategy=rule, race=race)
        return winner, (out, h, c) + (kept if training else ())

    race = _lstm.Race()
    winner, raced = run(race)
    assert race.done and winner == race.winner in race.seconds
    assert list(race.seconds)[0] == rule  # the rule ran first
    assert all(seconds > 0 for seconds in race.seconds.values())
    expected_names = set(_lstm.STRATEGIES) - {"columns-t"} if batch == 1 else \
        {"columns", "columns-t"}
    if batch == 1 and steps < 128:  # no transposed copy is made for a short row
        expected_names -= {"rows-t", "rows-t-gemm"}
    assert set(race.seconds) == expected_names
    assert run(race)[0] is None  # a claimed race is not run again
    _, unraced = run(None)
    for got, want in zip(raced, unraced):
        np.testing.assert_allclose(got, want, **tol(dtype))


SLOW, FAST = 10e-6, 1e-6


@pytest.mark.parametrize("times, winner", [
    ({"rows-t-gemm": 0.8 * FAST}, "rows-t-gemm"),  # 20% faster than the rule: wins
    ({"rows-t-gemm": 0.95 * FAST}, "rows-t"),  # 5%: within the margin, the rule stays
    ({}, "rows-t"),
])
def test_the_race_keeps_the_rule_unless_beaten_by_the_margin(times, winner):
    from cylstm import _lstm

    speeds = {"rows-t": FAST, "rows": 1.2 * FAST, "rows-gemm": SLOW, "rows-t-gemm": 1.1 * FAST,
              "columns": 3 * FAST, **times}
    chosen, trials = _lstm._simulate_race("rows-t", 1, True, 1000, _plan.new_race(),
                                          lambda name, _: speeds[name])
    assert chosen == winner
    assert trials[0][0] == "rows-t"
    ran = [name for name, _ in trials]
    # A candidate more than DROP slower leaves after its first trial; the others
    # have ROUNDS trials each at most.
    assert ran.count("rows-gemm") == ran.count("columns") == 1
    assert max(ran.count(name) for name in speeds) <= _plan.ROUNDS + 2


def test_the_race_stops_at_its_budget():
    """What the trials lose against the fastest candidate stays near BUDGET_FRACTION
    of the call (one untried candidate's trial may pass it)."""
    from cylstm import _lstm

    steps = 100
    speeds = {"rows-t": FAST, "rows": 1.9 * FAST, "rows-gemm": 1.9 * FAST,
              "rows-t-gemm": 1.9 * FAST, "columns": 1.9 * FAST}
    _, trials = _lstm._simulate_race("rows-t", 1, True, steps, _plan.new_race(),
                                     lambda name, _: speeds[name])
    lost = sum(seconds - FAST for _, seconds in trials)
    budget = _plan.BUDGET_FRACTION * steps * FAST
    assert budget < lost <= budget + 0.9 * FAST
    assert len(trials) < _plan.ROUNDS * len(speeds)
    # A noisy trial of the rule (here its first) only counts through its fastest.
    noisy = _lstm._simulate_race("columns", 8, True, 100, _plan.new_race(),
                                 lambda name, trial: (50 if trial == 0 else 1) *
                                 (FAST if name == "columns" else 1.05 * FAST))
    assert noisy[0] == "columns"


class _FakeClock:
    """perf_counter for the walk: each model call takes seconds[scheme] of the
    scheme the walk ran (told by the patched runners)."""

    def __init__(self, seconds):
        self.seconds, self.now, self.running = seconds, 0.0, None

    def perf_counter(self):
        self.now += self.seconds.get(self.running, 0.0)
        return self.now


@pytest.mark.parametrize("split_seconds, blas_seconds, chosen", [
    (0.2, 0.14, "blas"), (0.2, 0.19, "split"), (0.15, 0.19, "split")])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_measure_times_the_thread_schemes_over_the_first_calls(
        mode, monkeypatch, split_seconds, blas_seconds, chosen, bidirectional):
    from cylstm import _parallel, _walk

    if not _parallel.can_split():  # ci/test.sh installs threadpoolctl; the compat runs do not
        pytest.skip("splitting over threads needs threadpoolctl")
    mode("measure")
    clock = _FakeClock({"split": split_seconds, "blas": blas_seconds})
    monkeypatch.setattr(_walk, "time", clock)
    ran = []
    original_whole, original_split = _walk._forward_whole, _walk._forward_split

    def whole(*args, **kwargs):
        if "plan_workers" not in kwargs:  # not a part of the batch split
            scheme = "blas" if args[7] == 1 else "split"
            ran.append(scheme)
            clock.running = scheme
        return original_whole(*args, **kwargs)

    def split(*args, **kwargs):
        ran.append("split")
        clock.running = "split"
        return original_split(*args, **kwargs)

    monkeypatch.setattr(_walk, "_forward_whole", whole)
    monkeypatch.setattr(_walk, "_forward_split", split)
    rng = np.random.default_rng(3)
    model = cylstm.LSTM(4, 6, 2, bidirectional=bidirectional, num_threads=2, seed=5,
                        dtype=np.float64)
    x = random_input(rng, model, 12, 3)
    for _ in range(5):
        check_model(model, x)
    assert ran[:3] == list(_plan.SCHEME_TRIALS)
    assert ran[3:] == [chosen, chosen]
    assert list(_plan.PLANNER.thread_schemes().values()) == [chosen]
    mode("estimate")  # the rule: the split, never timed
    del ran[:]
    check_model(model, x)
    assert ran == ["split"] and _plan.PLANNER.thread_schemes() == {}


def test_plans_are_kept_per_blas_thread_count(mode):
    """A strategy measured with one BLAS thread need not be the best with two: the
    shape of a plan holds the thread count scipy's OpenBLAS runs at the call."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    mode("estimate")
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            assert _plan.blas_thread_count() == threads
            plans.plan_for(np.float32, 1000, 1, 32, 64)
            model = cylstm.LSTM(3, 4, seed=0)
            model(np.ones((40, 1, 3), np.float32))
    assert {shape.blas_threads for shape in plans.plans()} == {1, 2}
    assert len(plans.plans()) == 4


def test_a_bad_mode_is_refused(mode):
    with pytest.raises(ValueError, match="the plan mode must be one of"):
        mode("fastest")


def test_a_bad_environment_variable_warns_and_takes_the_default(monkeypatch):
    monkeypatch.setenv(_plan.ENVIRONMENT_VARIABLE, "fastest")
    with pytest.warns(RuntimeWarning, match="CYLSTM_PLAN"):
        planner = _plan._planner_from_environment()
    assert planner.mode == _plan.DEFAULT_MODE == "measure"


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
    saved["plans"][0]["strategy"] = "rows"
    for field, value in [("blas_threads", None), ("batch", -1e300), ("input_size", True),
                         ("dtype", "int8"), ("workers", 1 << 50)]:
        crafted = json.loads(json.dumps(saved))
        crafted["plans"][0]["shape"][field] = value
        bad.write_text(json.dumps(crafted))
        with pytest.warns(RuntimeWarning, match="cannot read wisdom"):
            assert plans.load_wisdom(bad) == 0, field


def test_first_calls_from_threads_are_safe_and_agree(mode):
    """Six threads make the first call of a shape at once: one races (its steps
    mix the products), the others run the rule; all agree within rounding."""
    mode("measure")
    model = cylstm.LSTM(6, 12, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((200, 1, 6))
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
    assert errors == [] and len(results) == 6
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], **tol(np.float64))
    model(x)
    (plan,) = plans.plans().values()
    assert plan.source == "measured"


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
