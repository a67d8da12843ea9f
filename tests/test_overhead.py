"""The short paths that keep the Python face cheap per call (issue 11) give what the
general path gives, bit for bit, and see every change to the weights."""

import numpy as np
import pytest

import cylstm
from cylstm import _lstm, _plan, _walk
from modelutil import assert_results_same, check_model
from reference import reference_model
from testutil import assert_close, tol

# (T, B, D, H, layers, proj_size)
CASES = [(1, 1, 32, 64, 1, 0), (7, 3, 5, 4, 2, 0), (130, 1, 3, 8, 1, 0), (6, 4, 3, 8, 2, 3),
         (9, 2, 4, 6, 1, 3)]


def _general_path(monkeypatch):
    """Make the model call's short path refuse every call, so the general one runs."""
    monkeypatch.setattr(_walk, "forward_common", lambda model, config, x: None)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_common_path_is_bit_identical_to_the_general_one(case, dtype, rng, monkeypatch):
    T, B, D, H, layers, proj = case
    model = cylstm.LSTM(D, H, layers, proj_size=proj, dtype=dtype, seed=1)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    taken = []
    original = _walk.forward_common
    monkeypatch.setattr(_walk, "forward_common",
                        lambda *args: taken.append(1) or original(*args))
    fast = check_model(model, x)
    assert taken, "the short path did not run"
    _general_path(monkeypatch)
    zeros = tuple(np.zeros_like(state) for state in fast[1])
    for args in [(x,), (x, zeros), (x.tolist(),), (np.asfortranarray(x),)]:
        assert_results_same(model(*args), fast)


def test_common_path_leaves_the_rest_to_the_general_one(rng, monkeypatch):
    """Unbatched, batch-first, bidirectional, another dtype, threads: not the short path,
    and still the reference's numbers."""
    shortened = []
    original = _walk.forward_common
    monkeypatch.setattr(_walk, "forward_common",
                        lambda *args: shortened.append(args) or original(*args))
    x = rng.standard_normal((5, 2, 3))
    cases = [(cylstm.LSTM(3, 4, seed=0, dtype=np.float64), x[:, 0]),
             (cylstm.LSTM(3, 4, seed=0, batch_first=True), x),
             (cylstm.LSTM(3, 4, seed=0, bidirectional=True), x),
             (cylstm.LSTM(3, 4, seed=0), x),  # float64 x for a float32 model
             (cylstm.LSTM(3, 4, seed=0), x.astype(np.float32)[::-1]),  # negative strides
             (cylstm.LSTM(3, 4, seed=0, num_threads=2), x.astype(np.float32))]
    for model, given in cases:
        check_model(model, given)
        assert all(original(*args) is None for args in shortened), repr(model)


@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("unbatched", [False, True])
def test_a_one_layer_stream_calls_the_kernel_as_the_walk_does(proj, unbatched, dtype, rng,
                                                              monkeypatch):
    model = cylstm.LSTM(3, 4, proj_size=proj, seed=2, dtype=dtype)
    chunks = [rng.standard_normal((steps, 3) if unbatched else (steps, 2, 3)).astype(dtype)
              for steps in (1, 5, 1, 3)]
    direct = []
    original = _walk.one_kernel_call
    monkeypatch.setattr(_walk, "one_kernel_call",
                        lambda *args: direct.append(1) or original(*args))
    stream = model.stream()
    fast = [stream(chunk) for chunk in chunks]
    assert len(direct) == len(chunks)
    monkeypatch.setattr(model, "_common_case", False)  # the walk for every chunk
    stream = model.stream()
    for chunk, expected in zip(chunks, fast):
        np.testing.assert_array_equal(stream(chunk), expected)
    assert len(direct) == len(chunks)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("path", ["model", "stream"])
def test_weights_changed_in_place_reach_the_next_call(path, layers, dtype, rng):
    """Nothing about the weights is cached across calls but their names: a change made
    in place (a training step, say) shows in the next call."""
    model = cylstm.LSTM(3, 5, layers, seed=0, dtype=dtype)
    x = rng.standard_normal((4, 2, 3)).astype(dtype)
    def run():
        return model(x)[0] if path == "model" else model.stream()(x)

    before = run()
    getattr(model, f"weight_hh_l{layers - 1}")[...] *= 0.5
    model.bias_ih_l0[:] += 0.25
    model.weight_ih_l0[0, 0] = 3.0
    after = run()
    expected, _ = reference_model(model.state_dict(), x, dtype=dtype)
    assert_close(after, expected, dtype)
    assert np.abs(after - before).max() > 1e-3


def test_common_path_leaves_x_alone(rng):
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    kept = x.copy()
    model = cylstm.LSTM(3, 4, 2, seed=0)
    out, (h_n, c_n) = model(x)
    np.testing.assert_array_equal(x, kept)
    assert not np.shares_memory(out, x) and not np.shares_memory(h_n, c_n)


@pytest.mark.parametrize("strategy", ["warp", 3, ["rows"], b"rows"])
def test_kernel_refuses_an_unknown_strategy(strategy):
    x = np.zeros((2, 1, 3), np.float32)
    w_ih, w_hh = np.zeros((16, 3), np.float32), np.zeros((16, 4), np.float32)
    h, c, out = np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32), np.empty(
        (2, 1, 4), np.float32)
    with pytest.raises(ValueError, match="strategy must be one of"):
        _lstm.forward_layer(x, w_ih, w_hh, np.zeros(16, np.float32), h, c, out,
                            strategy=strategy)


def test_plan_options_are_cached_per_bucket_and_bounded():
    """Steps past the last bucket share one entry; a shape's options are the plan's."""
    dtype = np.dtype(np.float32)
    first = _plan.kernel_options(dtype, 1500, 1, 32, 64, 0, 1)
    assert _plan.kernel_options(dtype, 10**6, 1, 32, 64, 0, 1) is first
    plan = cylstm.plans.plan_for(dtype, 1500, 1, 32, 64)
    assert first["strategy"] == plan.strategy
    assert first.get("chunk_bytes", _lstm.default_chunk_bytes()) == plan.chunk_bytes


def test_stream_steps_equal_one_call(dtype, rng):
    """One step at a time through the stream's path: the model call's numbers."""
    model = cylstm.LSTM(4, 6, 2, proj_size=3, seed=2, dtype=dtype)
    x = rng.standard_normal((9, 2, 4)).astype(dtype)
    stream = model.stream()
    steps = np.concatenate([stream(x[t:t + 1]) for t in range(len(x))])
    output, (h_n, c_n) = model(x)
    np.testing.assert_allclose(steps, output, **tol(dtype))
    h, c = stream.state
    np.testing.assert_allclose(h, h_n, **tol(dtype))
    np.testing.assert_allclose(c, c_n, **tol(dtype))


def test_a_variant_keeps_off_the_short_paths():
    """A peephole model's call and stream run the variant cell (not the plain one that
    the short paths call): chunks of a stream equal one call, which differs from the
    plain cell's; a reverse model cannot stream."""
    model = cylstm.LSTM(3, 4, peepholes=True, seed=0)
    model.weight_peephole_l0[:] = 0.5
    x = np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 1, 3)
    output, _ = model(x)
    plain = cylstm.LSTM(3, 4, seed=0)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "peephole" not in k})
    assert np.abs(output - plain(x)[0]).max() > 1e-3
    stream = model.stream()
    np.testing.assert_allclose(np.concatenate([stream(x[:1]), stream(x[1:])]), output,
                               rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="cannot stream"):
        cylstm.LSTM(3, 4, reverse=True).stream()


@pytest.mark.parametrize("strategy", _lstm.STRATEGIES)
def test_kernel_adds_bias_hh_as_numpy_does(strategy, dtype, rng):
    """bias_hh is summed in the kernel, bit-identical to passing b_ih + b_hh, and the
    caller's arrays are left alone; a wrong shape is refused."""
    T, B, D, H = 5, 3, 4, 6
    x = rng.standard_normal((T, B, D)).astype(dtype)
    w_ih, w_hh = (rng.uniform(-0.5, 0.5, shape).astype(dtype) for shape in ((4 * H, D),
                                                                          (4 * H, H)))
    b_ih, b_hh = rng.standard_normal((2, 4 * H)).astype(dtype)
    kept = b_ih.copy(), b_hh.copy()
    results = []
    for bias, extra in ((b_ih + b_hh, {}), (b_ih, {"bias_hh": b_hh})):
        h, c, out = np.zeros((B, H), dtype), np.zeros((B, H), dtype), np.empty((T, B, H), dtype)
        _lstm.forward_layer(x, w_ih, w_hh, bias, h, c, out, strategy=strategy, **extra)
        results.append((out, h, c))
    for summed, separate in zip(*results):
        np.testing.assert_array_equal(separate, summed)
    np.testing.assert_array_equal(b_ih, kept[0])
    np.testing.assert_array_equal(b_hh, kept[1])
    expected, _ = reference_model({"weight_ih_l0": w_ih, "weight_hh_l0": w_hh,
                                   "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}, x, dtype=dtype)
    assert_close(results[1][0], expected, dtype)
    with pytest.raises(ValueError, match=r"bias_hh must have shape \(24,\)"):
        _lstm.forward_layer(x, w_ih, w_hh, b_ih, h, c, out, bias_hh=b_hh[:-1])
