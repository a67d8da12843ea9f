"""Score a large set of sensor series with cylstm on a Dask cluster of two worker processes.

The series are generated on the workers, block by block, and never gathered: only one score
per series comes back. Each series runs through an LSTM and a linear read-out of its final
hidden state. The model here has random weights (a stand-in: pass --model PATH to score with a
model saved by cylstm.save). At the end the first series are scored again with one in-memory
call of the same model, and the two sets of scores are compared.

    python examples/score_dask.py                       # 50,000 series of 256 steps
    python examples/score_dask.py --series 1000000      # as many as you have time for
    python examples/score_dask.py --scheduler tcp://...  # an existing cluster

Needs dask[array] and distributed (pip install "dask[array]" distributed).
"""

import argparse
import importlib.util
import time

import numpy as np

import cylstm

FEATURES = 3  # sensor channels per time step


# -- data ---------------------------------------------------------------------------

def sensor_block(seed, block_info=None):
    """A block of synthetic series (rows, steps, 3): a noisy oscillation per row, some with a
    drift that starts at a random step. Seeded by the block's position, so any worker makes
    the same block."""
    info = block_info[None]
    rows, steps, _ = info["chunk-shape"]
    first_row, first_step = (location[0] for location in info["array-location"][:2])
    rng = np.random.default_rng([seed, first_row])
    t = np.arange(steps, dtype=np.float32)
    frequency = rng.uniform(0.02, 0.2, (rows, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (rows, 1, FEATURES))
    signal = np.sin(2 * np.pi * frequency * (t[None, :, None] + first_step) + phase)
    drift_start = rng.integers(0, 4 * steps, (rows, 1, 1))  # most rows never drift
    drift = np.clip(t[None, :, None] + first_step - drift_start, 0, None) * 0.01
    noise = 0.1 * rng.standard_normal((rows, steps, FEATURES))
    return (signal + drift + noise).astype(np.float32)


def sensor_series(series, steps, rows_per_chunk, steps_per_chunk, seed):
    """A lazy (series, steps, 3) float32 dask array, chunked along series and time."""
    import dask.array as da

    chunks = da.core.normalize_chunks((rows_per_chunk, steps_per_chunk, FEATURES),
                                      (series, steps, FEATURES))
    return da.map_blocks(sensor_block, seed, chunks=chunks, dtype=np.float32)


# -- model ---------------------------------------------------------------------------

def make_model(path, seed):
    """(LSTM over (series, steps, 3), read-out weights, read-out bias)."""
    if path:
        model = cylstm.load(path)
        if model.input_size != FEATURES or not model.batch_first:
            raise SystemExit(f"--model {path}: need input_size={FEATURES} and batch_first=True")
    else:
        model = cylstm.LSTM(FEATURES, 32, num_layers=2, batch_first=True, seed=seed)
    rng = np.random.default_rng(seed)
    readout = 4 * rng.standard_normal(model.output_size).astype(model.dtype) / model.output_size
    return model, readout, model.dtype.type(0.1)


def scores_of(h_n, readout, bias):
    """One score per series from the last layer's final hidden state (works on both NumPy
    and dask arrays)."""
    return 1 / (1 + np.exp(-(h_n[-1] @ readout + bias)))


# -- running ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--rows-per-chunk", type=int, default=1_000)
    parser.add_argument("--steps-per-chunk", type=int, default=128)
    parser.add_argument("--check", type=int, default=500,
                        help="series scored again in memory for the comparison")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 series of 64 steps (seconds; the tests use it)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="use this cluster instead of starting a LocalCluster")
    parser.add_argument("--model", metavar="PATH", help="an .npz saved by cylstm.save")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.series, args.steps, args.rows_per_chunk, args.steps_per_chunk = 2_000, 64, 250, 32

    from distributed import Client, LocalCluster, progress
    from cylstm.dask import forward

    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
        client = Client(cluster)
    try:
        dashboard = (client.dashboard_link if importlib.util.find_spec("bokeh")
                     else "pip install bokeh for the dashboard")
        print(f"cluster: {len(client.scheduler_info()['workers'])} worker processes; "
              f"dashboard: {dashboard}")
        model, readout, bias = make_model(args.model, args.seed)
        x = sensor_series(args.series, args.steps, args.rows_per_chunk, args.steps_per_chunk,
                          args.seed)
        print(f"{args.series:,} series x {args.steps} steps x {FEATURES} channels "
              f"({x.nbytes / 1e6:,.0f} MB, never gathered), chunks of "
              f"{args.rows_per_chunk} series x {args.steps_per_chunk} steps: {model}")

        start = time.perf_counter()
        _, (h_n, _) = forward(model, x)
        scores = client.persist(scores_of(h_n, readout, bias))
        if not args.no_progress:
            progress(scores)
            print()
        scores = client.compute(scores, sync=True)
        seconds = time.perf_counter() - start
        print(f"scored in {seconds:.1f} s ({args.series / seconds:,.0f} series/s)")

        # The same model in memory on the first series: the same scores up to rounding.
        head = x[:args.check].compute(scheduler="sync")
        _, (h_head, _) = model(head)
        difference = float(np.max(np.abs(scores[:args.check] - scores_of(h_head, readout, bias))))
        print(f"first {args.check} series in memory: max |difference| {difference:.1e}")
        low, median, high = np.quantile(scores, [0, 0.5, 1])
        print(f"scores: min {low:.4f}, median {median:.4f}, max {high:.4f}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return {"series": args.series, "scores": scores, "max_difference": difference,
            "seconds": seconds}


if __name__ == "__main__":
    main()
