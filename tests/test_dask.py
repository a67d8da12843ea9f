"""cylstm.dask.forward: an LSTM over dask arrays chunked along time and batch.

Every result is compared with one in-memory call of the same model (the same kernel runs on
each block, so they agree to rounding: float64 within 1e-12, float32 within 1e-5), and one case
with the float64 NumPy reference. Runs on dask's threaded scheduler and on a LocalCluster of two
worker processes, started and closed here.
"""

import importlib.util
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import cylstm  # noqa: E402
from cylstm import dask as cylstm_dask  # noqa: E402
from cylstm._parallel import single_threaded_blas  # noqa: E402
from modelutil import random_hx, random_input, random_lengths  # noqa: E402
from reference import reference_model  # noqa: E402
from testutil import assert_close, tol  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def threads(*arrays):
    return dask.compute(*arrays, scheduler="threads")


def assert_matches(got, expected, dtype):
    """Dask results (output, (h_n, c_n)), computed, agree with the in-memory ones."""
    for name, a, b in zip(("output", "h_n", "c_n"), (got[0], *got[1]),
                          (expected[0], *expected[1])):
        assert isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype), (name, type(a))
        assert a.shape == b.shape, (name, a.shape, b.shape)
        np.testing.assert_allclose(a, b, err_msg=name, **tol(dtype))


def check(model, x, chunks, hx=None, lengths=None, compute=threads):
    """forward over x chunked as `chunks` equals model(x, hx, lengths); returns the dask arrays."""
    out, (h_n, c_n) = cylstm_dask.forward(model, da.from_array(x, chunks=chunks), hx, lengths)
    for array in (out, h_n, c_n):
        assert isinstance(array, da.Array)
    expected_lengths = lengths.compute() if isinstance(lengths, da.Array) else lengths
    expected = model(x, hx, lengths=expected_lengths)
    got_out, got_h, got_c = compute(out, h_n, c_n)
    assert_matches((got_out, (got_h, got_c)), expected, model.dtype)
    return out, (h_n, c_n)


# (model options, T, B, time chunks, batch chunks, hx, lengths): every option and chunking.
CASES = {
    "plain": (dict(), 17, 5, 4, 2, False, None),
    "one-step-chunks": (dict(), 9, 3, 1, 3, True, "numpy"),
    "uneven": (dict(), 20, 7, (3, 8, 1, 6, 2), (1, 4, 2), True, None),
    "layers-hx": (dict(num_layers=3), 15, 4, 4, 3, True, None),
    "bidirectional": (dict(bidirectional=True), 16, 5, 5, 2, False, None),
    "bidir-layers-lengths": (dict(num_layers=2, bidirectional=True), 21, 6, (5, 1, 9, 6),
                             (2, 4), True, "numpy"),
    "projection": (dict(num_layers=2, proj_size=3, bidirectional=True), 14, 4, 3, 2, True,
                   "numpy"),
    "lengths-zeros": (dict(), 23, 7, 5, (3, 4), False, "numpy"),
    "lengths-carry": (dict(num_layers=2, padding="carry"), 23, 7, 5, (3, 4), True, "numpy"),
    "bidir-carry-dask-lengths": (dict(bidirectional=True, padding="carry"), 19, 6, (4, 4, 11),
                                 3, True, "dask"),
    "batch-first": (dict(batch_first=True, bidirectional=True), 13, 6, 4, 4, True, "numpy"),
    "no-bias": (dict(bias=False, num_layers=2), 11, 3, 2, 2, False, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_one_in_memory_call(case, dtype, rng):
    options, steps, batch, time_chunks, batch_chunks, with_hx, lengths_kind = CASES[case]
    model = cylstm.LSTM(4, 6, dtype=dtype, seed=3, **options)
    x = random_input(rng, model, steps, batch, dtype)
    hx = random_hx(rng, model, batch, dtype) if with_hx else None
    lengths = None
    if lengths_kind:
        lengths = random_lengths(rng, batch, steps)
        if lengths_kind == "dask":
            lengths = da.from_array(lengths, chunks=2)
    chunks = ((batch_chunks, time_chunks) if model.batch_first else (time_chunks, batch_chunks))
    out, (h_n, c_n) = check(model, x, chunks + (-1,), hx, lengths)
    # The output keeps x's chunks along time and batch.
    x_chunks = da.from_array(x, chunks=chunks + (-1,)).chunks
    assert out.chunks[:2] == x_chunks[:2]
    assert len(out.chunks[2]) == 1 and len(h_n.chunks[2]) == len(c_n.chunks[2]) == 1


def test_forward_equals_the_float64_reference(rng):
    model = cylstm.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, padding="carry",
                        dtype=np.float64, seed=4)
    x = random_input(rng, model, 18, 5)
    hx = random_hx(rng, model, 5)
    lengths = np.array([18, 1, 7, 12, 5])
    out, (h_n, c_n) = cylstm_dask.forward(model, da.from_array(x, chunks=(4, 2, 3)), hx,
                                          lengths)
    expected = reference_model(model.state_dict(), x, hx, lengths, padding="carry")
    got = threads(out, h_n, c_n)
    for name, a, b in zip(("output", "h_n", "c_n"), got, (expected[0], *expected[1])):
        assert_close(a, b, np.float64, name)


def test_unbatched_sequence(dtype, rng):
    model = cylstm.LSTM(4, 6, num_layers=2, bidirectional=True, dtype=dtype, seed=5)
    x = random_input(rng, model, 25)
    hx = random_hx(rng, model, None, dtype)
    out, (h_n, c_n) = check(model, x, (7, -1), hx)
    assert out.shape == (25, 12) and h_n.shape == (4, 6)


def test_lengths_that_end_in_every_chunk_and_at_its_edges(rng):
    # Rows that end exactly at a chunk boundary, one step after it and at its last step.
    model = cylstm.LSTM(2, 3, bidirectional=True, padding="carry", dtype=np.float64, seed=6)
    x = random_input(rng, model, 12, 9)
    lengths = np.array([1, 3, 4, 5, 7, 8, 9, 11, 12])
    check(model, x, (4, 3, -1), lengths=lengths)


def test_graph_is_lazy_and_records_the_state_hand_off(rng):
    computed = []

    def block(block_info=None):
        computed.append(block_info[None]["chunk-location"])
        return np.ones(block_info[None]["chunk-shape"])

    x = da.map_blocks(block, chunks=((3, 3, 3), (2, 2), (4,)), dtype=np.float64)
    model = cylstm.LSTM(4, 5, bidirectional=True, dtype=np.float64, seed=7)
    out, (h_n, c_n) = cylstm_dask.forward(model, x)
    assert computed == []
    # Forward: block (k, j) waits for block (k - 1, j); reverse for (k + 1, j); 3 x 2 x 2
    # block tasks and 2 models (one per direction).
    graph = dict(out.__dask_graph__())
    core = [key for key in graph if isinstance(key, tuple) and key[0].startswith("cylstm-lstm")]
    blocks = {key[1:]: key for key in core if key[1] != "model"}
    assert len(blocks) == 12 and len(core) == 14
    dependencies = dask.core.get_dependencies(graph, blocks[(0, 0, 1, 1)])
    assert blocks[(0, 0, 0, 1)] in dependencies and blocks[(0, 0, 2, 1)] not in dependencies
    dependencies = dask.core.get_dependencies(graph, blocks[(0, 1, 1, 1)])
    assert blocks[(0, 1, 2, 1)] in dependencies and blocks[(0, 1, 0, 1)] not in dependencies
    result = threads(out)[0]
    expected = model(np.ones((9, 4, 4)))[0]
    np.testing.assert_allclose(result, expected, **tol(np.float64))


def test_weights_are_taken_when_the_graph_is_built_and_inputs_are_not_modified(rng):
    model = cylstm.LSTM(3, 4, dtype=np.float64, seed=8)
    x = random_input(rng, model, 10, 3)
    hx = random_hx(rng, model, 3)
    saved = [a.copy() for a in (x, *hx)]
    weights = model.state_dict()
    expected = model(x, hx)
    out, (h_n, c_n) = cylstm_dask.forward(model, da.from_array(x, chunks=(3, 2, 3)), hx)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights[name])
    model.weight_hh_l0 += 1.0  # after forward: not in the graph
    assert_matches((threads(out)[0], threads(h_n, c_n)), expected, np.float64)
    for before, after in zip(saved, (x, *hx)):
        np.testing.assert_array_equal(before, after)


# -- errors ------------------------------------------------------------------

def test_errors_name_the_argument():
    model = cylstm.LSTM(4, 5, seed=0)
    x = da.zeros((10, 6, 4), chunks=(5, 3, 4))
    with pytest.raises(ValueError, match=r"x must not be chunked along its feature axis"):
        cylstm_dask.forward(model, da.zeros((10, 6, 4), chunks=(5, 3, 2)))
    with pytest.raises(ValueError, match=r"x must have input_size=4 .* got shape \(10, 6, 3\)"):
        cylstm_dask.forward(model, da.zeros((10, 6, 3), chunks=(5, 3, 3)))
    with pytest.raises(ValueError, match=r"lengths must have one entry per row of x: 6 rows, "
                                         r"got 5"):
        cylstm_dask.forward(model, x, lengths=[10, 10, 10, 10, 10])
    with pytest.raises(ValueError, match=r"lengths must have one entry per row of x: "
                                         r"shape \(6,\), got \(7,\)"):
        cylstm_dask.forward(model, x, lengths=da.ones(7, dtype=int, chunks=3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 10\]"):
        cylstm_dask.forward(model, x, lengths=[10, 0, 10, 10, 10, 10])
    with pytest.raises(TypeError, match=r"lengths must be integers"):
        cylstm_dask.forward(model, x, lengths=da.ones(6, chunks=3))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c0\) must have shape \(1, 6, 5\)"):
        cylstm_dask.forward(model, x, (np.zeros((1, 6, 5)), np.zeros((1, 5, 5))))
    with pytest.raises(TypeError, match=r"x must be a dask array, got ndarray"):
        cylstm_dask.forward(model, np.zeros((10, 6, 4)))
    with pytest.raises(TypeError, match=r"model must be a cylstm.LSTM"):
        cylstm_dask.forward("model", x)
    with pytest.raises(ValueError, match=r"x must be 3-D .* or 2-D"):
        cylstm_dask.forward(model, da.zeros((2, 10, 6, 4)))
    with pytest.raises(ValueError, match=r"lengths applies to batched input"):
        cylstm_dask.forward(model, da.zeros((10, 4)), lengths=[3])


def test_dask_lengths_are_checked_when_the_graph_runs():
    model = cylstm.LSTM(4, 5, seed=0)
    x = da.zeros((10, 6, 4), chunks=(5, 3, 4))
    out, _ = cylstm_dask.forward(model, x, lengths=da.from_array(np.arange(6) * 3, chunks=3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 10\].* got values from"):
        threads(out)


# -- threads, memory, import -------------------------------------------------------

def test_blas_limit_holds_until_the_last_concurrent_task_leaves():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return {lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"}

    before = blas_threads()
    inside, first_in, second_out = [], threading.Event(), threading.Event()

    def first():
        with single_threaded_blas():
            first_in.set()
            second_out.wait(10)
            inside.append(blas_threads())  # the other task has left: still limited

    for _ in range(2):  # tasks on new threads each time: the limit is set again
        thread = threading.Thread(target=first)
        thread.start()
        first_in.wait(10)
        with single_threaded_blas():
            inside.append(blas_threads())
        second_out.set()
        thread.join()
        first_in.clear()
        second_out.clear()
        assert blas_threads() == before
    assert inside == [{1}, {1}, {1}, {1}]


def test_a_long_sequence_streams_with_bounded_memory():
    # A dask array of random steps, never materialised, through a two-layer model on the
    # threaded scheduler. Blocks of 5,000 steps (40 kB of x, 80 kB of output per layer): the
    # peak grows with the number of blocks by the graph's bookkeeping only, far less than
    # the output, which would grow by 9.6 MB from 50,000 to 200,000 steps.
    model = cylstm.LSTM(1, 8, num_layers=2, dtype=np.float32, seed=9)

    def run(steps):
        x = da.random.default_rng(0).standard_normal((steps, 2, 1), chunks=(5_000, 2, 1),
                                                      dtype=np.float32)
        out, (h_n, c_n) = cylstm_dask.forward(model, x)
        tracemalloc.start()
        try:
            # Three threads: two for the chain's wavefront (layer 1 runs block k while
            # layer 0 runs block k + 1), one for the output's consumers (without a free
            # thread dask may run the chain ahead and keep its outputs; on one thread it
            # runs the whole chain first, the longest path, see cylstm.dask).
            total, last_h = dask.compute(out.sum(axis=0, dtype=np.float64), h_n,
                                         scheduler="threads", num_workers=3)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return x, total, last_h, peak

    run(10_000)  # warm up: dask's first compute imports and caches
    _, _, _, short_peak = run(50_000)
    x, total, last_h, peak = run(200_000)
    # Scheduling varies from run to run (a busy CI machine let blocks pile up to 5.4 MB
    # once at num_workers=2): the bounds say "far from the whole output", not a figure.
    out_growth = (200_000 - 50_000) * 2 * 8 * 4
    assert peak - short_peak < out_growth / 2, (short_peak, peak, out_growth)
    assert peak < 200_000 * 2 * 8 * 4 / 2, peak
    expected_out, (expected_h, _) = model(x.compute())
    np.testing.assert_allclose(last_h, expected_h, **tol(np.float32))
    np.testing.assert_allclose(total, expected_out.sum(axis=0, dtype=np.float64), rtol=1e-5)


def test_importing_cylstm_does_not_import_dask():
    code = "import sys, cylstm; cylstm.LSTM(2, 3); print('dask' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd="/")
    assert result.stdout.strip() == "False", result


# -- on a cluster of worker processes ---------------------------------------------

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, worker_dashboard_address=None)
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_forward_on_worker_processes(client, dtype, rng):
    model = cylstm.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3, padding="carry",
                        dtype=dtype, seed=10)
    x = random_input(rng, model, 22, 6, dtype)
    hx = random_hx(rng, model, 6, dtype)
    lengths = da.from_array(random_lengths(rng, 6, 22), chunks=3)

    def on_cluster(*arrays):
        return client.compute(list(arrays), sync=True)

    check(model, x, ((6, 5, 1, 10), 3, -1), hx, lengths, compute=on_cluster)


def test_score_example_on_the_cluster(client, capsys):
    spec = importlib.util.spec_from_file_location("score_dask", EXAMPLES / "score_dask.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--quick", "--scheduler", client.scheduler.address])
    printed = capsys.readouterr().out
    assert result["series"] == 2_000 and result["scores"].shape == (2_000,)
    assert result["max_difference"] <= 1e-5, result["max_difference"]
    assert np.all(np.isfinite(result["scores"]))
    assert "max |difference|" in printed


def test_persisted_and_derived_inputs_on_worker_processes(client, rng):
    # x held on the workers (its blocks are futures), and x computed from a random draw by
    # elementwise steps (its blocks are tasks that forward holds back): both as in memory.
    model = cylstm.LSTM(3, 5, num_layers=2, dtype=np.float64, seed=11)
    x = random_input(rng, model, 30, 4)
    persisted = client.persist(da.from_array(x, chunks=(7, 2, 3)))
    out, (h_n, _) = cylstm_dask.forward(model, persisted)
    got_out, got_h = client.compute([out, h_n], sync=True)
    expected_out, (expected_h, _) = model(x)
    np.testing.assert_allclose(got_out, expected_out, **tol(np.float64))
    np.testing.assert_allclose(got_h, expected_h, **tol(np.float64))

    derived = (da.random.default_rng(1).standard_normal((40, 4, 3), chunks=(6, 2, 3)) * 2 + 1)
    out, (h_n, _) = cylstm_dask.forward(model, derived)
    got_out, got_h = client.compute([out, h_n], sync=True)
    expected_out, (expected_h, _) = model(derived.compute(scheduler="sync"))
    np.testing.assert_allclose(got_out, expected_out, **tol(np.float64))
    np.testing.assert_allclose(got_h, expected_h, **tol(np.float64))
