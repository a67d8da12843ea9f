"""Benchmark of cylstm.dask: ``python -m cylstm bench --dask [--quick] [--json PATH]``.

Three measurements, each printed with the machine's CPU and load:

``scaling``
    A batch-chunked forward (config c's sizes per chunk: 32 rows, D=128, H=256, float32, with
    16 chunks) on a LocalCluster of 1 worker process and on one of 2, each worker one thread.
    Both clusters stay up and are timed in turns, medians reported; x is generated and kept
    on the workers (``persist``) before timing, so only the forward and a small sum come back.
    Target: 2 workers >= 1.6x the throughput of 1 on a 2-core machine.
``time chunks``
    One sequence of config c (T=10,000, B=32, D=128, H=256) in chunks of 1,000 steps through
    the threaded scheduler, stored into one NumPy array, against one in-memory model call; both
    with BLAS at one thread (as the dask tasks run), timed in turns. Target: <= 1.2x.
``stream``
    10**7 steps of batch 1 (D=8, H=32) drawn by ``dask.array.random``, never materialised, in
    chunks of 10**5, through a cluster of one worker process with two threads (one runs the
    chain, the other the output's consumers): the sum of the output and h_n come back.
    Reports steps per second and how much the worker's peak RSS (Linux: VmHWM, reset before
    the run) grew, against the sizes x
    and the output would have in memory.

Needs dask[array] and distributed.
"""
import argparse
import json
import statistics
import time

import numpy as np

from .. import LSTM
from .._atomic import atomic_write
from .machine import machine_info

TARGETS = {"scaling": 1.6, "time_chunks": 1.2}


def _sizes(quick):
    return {
        "scaling": dict(steps=100 if not quick else 50, rows=32, chunks=16, D=128, H=256),
        "time_chunks": dict(steps=10_000 if not quick else 2_000, chunk=1_000, B=32, D=128,
                            H=256),
        "stream": dict(steps=10**7 if not quick else 10**6, chunk=10**5, D=8, H=32),
        "repeats": 7 if not quick else 3,
    }


def _client(workers, threads):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                           dashboard_address=None)
    return Client(cluster, set_as_default=False)


def _close(client):
    cluster = client.cluster
    client.close()
    cluster.close()


def scaling(clients, sizes, repeats):
    """Median seconds of the batch-chunked forward on each cluster, timed in turns."""
    import dask.array as da

    from ..dask import forward

    s = sizes
    model = LSTM(s["D"], s["H"], seed=0)
    batch = s["rows"] * s["chunks"]
    x = da.random.default_rng(0).standard_normal(
        (s["steps"], batch, s["D"]), chunks=(s["steps"], s["rows"], s["D"]), dtype=np.float32)
    persisted = {n: client.persist(x) for n, client in clients.items()}
    times = {n: [] for n in clients}
    for repeat in range(repeats + 1):  # the first round warms the workers up
        for n in (list(clients) if repeat % 2 else list(clients)[::-1]):
            out, (h_n, _) = forward(model, persisted[n])
            start = time.perf_counter()
            clients[n].compute([out.sum(), h_n], sync=True)
            if repeat:
                times[n].append(time.perf_counter() - start)
    medians = {n: statistics.median(t) for n, t in times.items()}
    steps = s["steps"] * batch
    return {"sizes": s, "seconds": medians,
            "steps_per_second": {n: steps / t for n, t in medians.items()},
            "speedup": medians[1] / medians[2]}


def time_chunks(sizes, repeats):
    """Median seconds of the time-chunked dask forward and of one in-memory call, in turns."""
    import dask.array as da
    from threadpoolctl import threadpool_limits

    from ..dask import forward

    s = sizes
    model = LSTM(s["D"], s["H"], seed=0)
    x = np.random.default_rng(0).standard_normal((s["steps"], s["B"], s["D"])).astype(np.float32)
    x_dask = da.from_array(x, chunks=(s["chunk"], s["B"], s["D"]))
    target = np.empty((s["steps"], s["B"], s["H"]), np.float32)

    def in_memory():
        with threadpool_limits(limits=1, user_api="blas"):
            return model(x)[0]

    def chunked():
        out, _ = forward(model, x_dask)
        da.store(out, target, lock=False, scheduler="threads")
        return target

    times = {"in_memory": [], "dask": []}
    for repeat in range(repeats + 1):
        order = [("in_memory", in_memory), ("dask", chunked)]
        for name, run in (order if repeat % 2 else order[::-1]):
            start = time.perf_counter()
            result = run()
            if repeat:
                times[name].append(time.perf_counter() - start)
            elif name == "dask":
                difference = float(np.max(np.abs(result - model(x)[0])))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"sizes": s, "seconds": medians, "ratio": medians["dask"] / medians["in_memory"],
            "max_difference": difference}


def stream(client, sizes):
    """A long random sequence through one worker: steps/s and the worker's peak RSS growth."""
    import dask.array as da

    from ..dask import forward

    s = sizes
    model = LSTM(s["D"], s["H"], seed=0)
    x = da.random.default_rng(0).standard_normal((s["steps"], 1, s["D"]),
                                                  chunks=(s["chunk"], 1, s["D"]),
                                                  dtype=np.float32)
    out, (h_n, _) = forward(model, x)
    client.compute(out[:s["chunk"]].sum(axis=0), sync=True)  # imports and one block first
    before = client.run(_reset_peak_rss)
    start = time.perf_counter()
    client.compute([out.sum(axis=0), h_n], sync=True)
    seconds = time.perf_counter() - start
    peaks = client.run(_peak_rss)
    growth = max(peaks[w] - before[w] for w in peaks)
    return {"sizes": s, "seconds": seconds, "steps_per_second": s["steps"] / seconds,
            "peak_rss_growth_mb": growth / 1e6,
            "x_mb": s["steps"] * s["D"] * 4 / 1e6, "output_mb": s["steps"] * s["H"] * 4 / 1e6}


def _reset_peak_rss():
    """The process's RSS now, in bytes, after resetting its peak to it (Linux: VmHWM)."""
    import psutil

    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")
    return psutil.Process().memory_info().rss


def _peak_rss():
    """The process's peak RSS since _reset_peak_rss, in bytes."""
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run(quick=False):
    """All three measurements; a dict (see the module docstring)."""
    sizes = _sizes(quick)
    result = {"machine": machine_info(), "quick": quick}
    result["time_chunks"] = time_chunks(sizes["time_chunks"], sizes["repeats"])
    clients = {workers: _client(workers, 1) for workers in (1, 2)}
    try:
        result["scaling"] = scaling(clients, sizes["scaling"], sizes["repeats"])
    finally:
        for client in clients.values():
            _close(client)
    client = _client(1, 2)
    try:
        result["stream"] = stream(client, sizes["stream"])
    finally:
        _close(client)
    return result


def format_report(result):
    machine = result["machine"]
    scaling, chunks, streamed = result["scaling"], result["time_chunks"], result["stream"]
    s, c, t = scaling["sizes"], chunks["sizes"], streamed["sizes"]
    rate = scaling["steps_per_second"]
    lines = [
        f"cylstm.dask benchmark, {machine['date']}: {machine['cpu']} ({machine['cpu_count']} "
        f"CPUs, load average {machine.get('load_average')}), float32, median of turns",
        f"scaling: T={s['steps']}, {s['chunks']} batch chunks of {s['rows']} rows, "
        f"D={s['D']}, H={s['H']}: 1 worker {scaling['seconds'][1] * 1e3:.0f} ms "
        f"({rate[1] / 1e3:.0f}k row-steps/s), 2 workers {scaling['seconds'][2] * 1e3:.0f} ms "
        f"({rate[2] / 1e3:.0f}k row-steps/s): {scaling['speedup']:.2f}x "
        f"(target >= {TARGETS['scaling']}x)",
        f"time chunks: T={c['steps']}, B={c['B']}, D={c['D']}, H={c['H']}, chunks of "
        f"{c['chunk']} steps: dask {chunks['seconds']['dask'] * 1e3:.0f} ms, one in-memory "
        f"call {chunks['seconds']['in_memory'] * 1e3:.0f} ms: {chunks['ratio']:.3f}x "
        f"(target <= {TARGETS['time_chunks']}x); max |difference| "
        f"{chunks['max_difference']:.1e}",
        f"stream: {t['steps']:,} steps, batch 1, D={t['D']}, H={t['H']}, chunks of "
        f"{t['chunk']:,}, one worker of 2 threads: {streamed['seconds']:.1f} s "
        f"({streamed['steps_per_second'] / 1e6:.2f}M steps/s); worker peak RSS grew "
        f"{streamed['peak_rss_growth_mb']:.0f} MB (x would be {streamed['x_mb']:.0f} MB, "
        f"the output {streamed['output_mb']:.0f} MB)",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cylstm bench --dask",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 3 turns")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(format_report(result))
    if args.json:
        with atomic_write(args.json, "w") as file:
            json.dump(result, file, indent=1, default=str)
    return 0
