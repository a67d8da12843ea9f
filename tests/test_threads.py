"""Calling the same model (and cylstm.lstm) from several threads at once gives exactly the
results of sequential calls; the kernel releases the GIL while it runs."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cylstm
from testutil import check_against_reference, random_state

N_THREADS = 8


def _run_concurrently(fn, jobs):
    """fn(job) for every job, N_THREADS at a time, each wave released by one barrier so
    that the calls really overlap; results in job order."""
    results = []
    for start in range(0, len(jobs), N_THREADS):
        wave = jobs[start:start + N_THREADS]
        barrier = threading.Barrier(len(wave))

        def task(job, barrier=barrier):
            barrier.wait(timeout=30)
            return fn(job)

        with ThreadPoolExecutor(len(wave)) as ex:
            results.extend(ex.map(task, wave))
    return results


@pytest.mark.parametrize("batch_first", [False, True])
def test_same_model_many_threads(batch_first, dtype, rng):
    T, B, D, H = 150, 5, 16, 48
    model = cylstm.LSTM(D, H, dtype=dtype, batch_first=batch_first, seed=0)
    # different inputs and sizes per job, so a shared scratch buffer would show
    jobs = []
    for j in range(2 * N_THREADS):
        b = 1 + j % B
        s = (b, T - j, D) if batch_first else (T - j, b, D)
        jobs.append((rng.standard_normal(s), random_state(rng, (1, b, H), dtype)))
    sequential = [model(x, hx) for x, hx in jobs]
    for _ in range(2):
        concurrent = _run_concurrently(lambda job: model(*job), jobs)
        for (out, (h, c)), (e_out, (e_h, e_c)) in zip(concurrent, sequential):
            np.testing.assert_array_equal(out, e_out)
            np.testing.assert_array_equal(h, e_h)
            np.testing.assert_array_equal(c, e_c)
    # and the sequential answers are right
    check_against_reference(model, *jobs[3])


def test_functional_many_threads(dtype, rng):
    T, B, D, H = 100, 3, 8, 32
    m = cylstm.LSTM(D, H, dtype=dtype, seed=2)
    w = (m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)
    jobs = [(rng.standard_normal((T, B, D)).astype(dtype),
             *random_state(rng, (B, H), dtype)) for _ in range(N_THREADS)]
    sequential = [cylstm.lstm(x, *w, h0, c0) for x, h0, c0 in jobs]
    concurrent = _run_concurrently(lambda j: cylstm.lstm(j[0], *w, j[1], j[2]), jobs)
    for got, exp in zip(concurrent, sequential):
        for a, b in zip(got, exp):
            np.testing.assert_array_equal(a, b)


def test_different_models_many_threads(rng):
    models = [cylstm.LSTM(6, 10 + i, dtype=[np.float32, np.float64][i % 2], seed=i,
                          batch_first=bool(i % 3 == 0)) for i in range(N_THREADS)]
    xs = [rng.standard_normal((40, 3, 6)) for _ in models]
    sequential = [m(x) for m, x in zip(models, xs)]
    concurrent = _run_concurrently(lambda i: models[i](xs[i]), list(range(N_THREADS)))
    for (out, (h, c)), (e_out, (e_h, e_c)) in zip(concurrent, sequential):
        np.testing.assert_array_equal(out, e_out)
        np.testing.assert_array_equal(c, e_c)


def test_kernel_releases_the_gil():
    """A pure-Python thread keeps running while one long forward call is in progress: the
    longest pause it sees during the call is a small part of the call (GIL held: ~all)."""
    model = cylstm.LSTM(32, 128, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((20000, 1, 32))
    model(x[:10])  # warm up

    gaps = []            # (t_prev, t_now) for every pause of the spinner longer than 1 ms
    stop = threading.Event()
    started = threading.Event()

    def spin():
        prev = time.perf_counter()
        started.set()
        while not stop.is_set():
            now = time.perf_counter()
            if now - prev > 1e-3:
                gaps.append((prev, now))
            prev = now
        gaps.append((prev, float("inf")))   # sentinel: the spinner's last sign of life

    th = threading.Thread(target=spin)
    th.start()
    try:
        started.wait(10)
        time.sleep(0.02)
        start = time.perf_counter()
        out, _ = model(x)
        end = time.perf_counter()
    finally:
        stop.set()
        th.join()
    elapsed = end - start
    assert out.shape == (20000, 1, 128) and np.isfinite(out).all()
    assert np.abs(out).max() > 1e-3
    assert elapsed > 0.05, elapsed   # long enough to tell the two cases apart
    longest = max((min(b, end) - max(a, start) for a, b in gaps if b > start and a < end),
                  default=0.0)
    assert longest < 0.5 * elapsed, (longest, elapsed)


# --- num_threads: one call split over several threads --------------------------------------

def _split_case(dtype, batch_first=False, bidirectional=True, padding="zeros"):
    rng = np.random.default_rng(5)
    model = cylstm.LSTM(6, 9, 2, bidirectional=bidirectional, proj_size=4,
                        batch_first=batch_first, padding=padding, dtype=dtype, seed=3)
    x = rng.standard_normal((7, 11, 6) if batch_first else (11, 7, 6)).astype(dtype)
    lengths = rng.integers(1, 12, size=7)
    hx = (rng.standard_normal((4, 7, 4)).astype(dtype),
          rng.standard_normal((4, 7, 9)).astype(dtype))
    return model, x, hx, lengths


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding", ["zeros", "carry"])
@pytest.mark.parametrize("bidirectional,workers", [(False, 2), (False, 3), (True, 3),
                                                   (True, 16)])
def test_num_threads_splits_the_batch_with_the_same_results(dtype, batch_first, padding,
                                                            bidirectional, workers):
    pytest.importorskip("threadpoolctl")
    model, x, hx, lengths = _split_case(dtype, batch_first, bidirectional, padding)
    if not bidirectional:
        hx = (hx[0][:2], hx[1][:2])
    expected = model(x, hx, lengths)
    model.num_threads = workers
    got = model(x, hx, lengths)
    tolerance = 1e-6 if dtype == np.float32 else 1e-14
    for a, b in zip((got[0], *got[1]), (expected[0], *expected[1])):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("batch,workers", [(1, 2), (1, 3), (7, 2)])
def test_num_threads_runs_the_directions_side_by_side(dtype, batch, workers):
    """At batch 1, or with two workers, a bidirectional model's two directions run side by
    side: the same kernel calls as one thread."""
    pytest.importorskip("threadpoolctl")
    model, x, hx, lengths = _split_case(dtype)
    x, hx = x[:, :batch], (hx[0][:, :batch], hx[1][:, :batch])
    lengths = lengths[:batch]
    expected = model(x, hx, lengths)
    model.num_threads = workers
    got = model(x, hx, lengths)
    for a, b in zip((got[0], *got[1]), (expected[0], *expected[1])):
        np.testing.assert_array_equal(a, b)  # the very same kernel calls


@pytest.mark.parametrize("value", [0, -1, 1.5, "2"])
def test_num_threads_must_be_a_positive_int(value):
    with pytest.raises((TypeError, ValueError), match="num_threads"):
        cylstm.LSTM(3, 4, num_threads=value)


def _blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return max(info["num_threads"] for info in threadpoolctl.threadpool_info()
               if info["user_api"] == "blas")


def test_overlapping_split_calls_leave_blas_threads_as_they_were(rng):
    """Split calls limit BLAS to one thread (a process-wide setting) only while
    one runs: however they interleave, the limit before is the limit after."""
    before = _blas_threads()
    model = cylstm.LSTM(8, 16, num_threads=2, seed=0)
    # Calls of very different lengths, so that they end in another order than
    # they began.
    jobs = [rng.standard_normal((int(rng.integers(1, 400)), 4, 8)) for _ in range(48)]
    results = _run_concurrently(model, jobs)
    for x, (output, _) in zip(jobs, results):
        np.testing.assert_allclose(output, cylstm.LSTM(8, 16, seed=0)(x)[0],
                                   rtol=1e-5, atol=1e-6)
    assert _blas_threads() == before


def test_blas_limit_contexts_end_in_any_order():
    from cylstm._parallel import single_threaded_blas

    before = _blas_threads()
    if before < 2:
        pytest.skip("BLAS runs one thread here already")  # CI machines have 2 cores
    first, second = single_threaded_blas(), single_threaded_blas()
    first.__enter__()
    second.__enter__()
    assert _blas_threads() == 1
    first.__exit__(None, None, None)   # the first to start ends first
    assert _blas_threads() == 1        # the second still runs
    second.__exit__(None, None, None)
    assert _blas_threads() == before
