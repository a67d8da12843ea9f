"""The per-call overhead of cylstm's Python face, against another build and the bare kernel.

    python benchmarks/overhead.py                        # this checkout's cylstm only
    python benchmarks/overhead.py --old /tmp/h1/old      # ... and an older built checkout

Each build runs in a worker process of its own (PYTHONPATH set to its checkout; the
checkout of this script unless --new says otherwise); the driver asks the workers for
blocks of calls in turn, the starting build rotated, so that load from other work on
the machine hits them alike. Within a block the cases of a group alternate call by
call (the order flipped every round), so that the ratio of two cases is taken over
neighbouring calls: on a shared machine whole stretches of time run 3x slower, and
a ratio of medians taken apart can be off by more than the overhead looked for.
Cases:

  t1          model(x), x (1, 1, D): one step, batch 1
  stream1     stream(x) with x (1, 1, D): a one-step stream call
  t1-kernel   cylstm._lstm.forward_layer on x (1, 1, D), as a-kernel (the floor of both)
  a-model     model(x) at config a, x (1000, 1, D)
  a-kernel    cylstm._lstm.forward_layer on the same arrays with the strategy the
              model's plan chose (output and state preallocated)
  a-raced     model(x) at config a as the first call of its shape in "measure" mode
              (the plans forgotten just before): the call that races the strategies
  a-after     model(x) right after a-raced: the plan settled, the winner runs

Workers run in "estimate" mode except for a-raced and a-after (so a-raced / a-after
is what measuring a plan costs).

D=32, H=64, float32, BLAS on one thread (OPENBLAS_NUM_THREADS etc. = 1; --threads).
Garbage collection is off while timing. The machine's CPU model is printed with the
figures: they mean nothing without it.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

D, H, T_A = 32, 64, 1000
# Groups of cases timed alternately, and the rounds of each group per block (a block
# takes a few milliseconds).
GROUPS = {("t1", "stream1", "t1-kernel"): 100, ("a-model", "a-kernel"): 10,
          ("a-raced", "a-after"): 10}
CASES = tuple(case for group in GROUPS for case in group)
# Ratios over neighbouring calls: (numerator, denominator).
RATIOS = (("a-model", "a-kernel"), ("t1", "t1-kernel"), ("stream1", "t1-kernel"),
          ("a-raced", "a-after"))


# -- the worker: one build's cylstm, driven over stdin ----------------------------------


def _worker():
    import gc

    import numpy as np

    import cylstm

    model = cylstm.LSTM(D, H, seed=0)  # float32
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 1, D)).astype(np.float32)
    xa = rng.standard_normal((T_A, 1, D)).astype(np.float32)
    stream = model.stream()
    calls = {"t1": lambda: model(x1), "stream1": lambda: stream(x1),
             "t1-kernel": _bare_kernel(cylstm, model, x1),
             "a-model": lambda: model(xa), "a-kernel": _bare_kernel(cylstm, model, xa),
             "a-raced": _raced(cylstm, model, xa), "a-after": _after(cylstm, model, xa)}
    for case in calls.values():  # warm-up: plans, caches, first-touch of buffers
        case()
        case()
    print(cylstm.__file__, flush=True)
    gc.disable()
    for line in sys.stdin:
        group, rounds = line.split()
        group = [calls[case] for case in group.split(",")]
        times = [[] for _ in group]
        faults = [0] * len(group)  # minor page faults (fresh memory from the system)
        for round_ in range(int(rounds)):
            order = range(len(group)) if round_ % 2 == 0 else range(len(group) - 1, -1, -1)
            for index in order:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter_ns()
                group[index]()
                times[index].append(time.perf_counter_ns() - start)
                faults[index] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        print(json.dumps([times, faults]), flush=True)


def _raced(cylstm, model, x):
    """model(x) as the first call of its shape in "measure" mode."""
    def call():
        cylstm.plans.set_mode("measure")  # forgets every plan
        return model(x)
    return call


def _after(cylstm, model, x):
    """model(x) in "measure" mode after a raced call, then back to "estimate"."""
    def call():
        result = model(x)
        cylstm.plans.set_mode("estimate")
        return result
    return call


def _bare_kernel(cylstm, model, x):
    """forward_layer on x with the model's layer-0 weights, as the model's call runs it."""
    import numpy as np

    from cylstm import _lstm

    out = np.empty((x.shape[0], x.shape[1], H), np.float32)
    h, c = np.zeros((1, H), np.float32), np.zeros((1, H), np.float32)
    try:
        from cylstm import _plan, _walk
    except ImportError:  # builds before the walk and plans (c19e587): the kernel's own rule
        w_ih, w_hh, bias, w_hr = model._kernel_parameters(0, 0)
        return lambda: _lstm.forward_layer(x, w_ih, w_hh, bias, h, c, out)
    weights = _walk.kernel_weights(model, model._config)[0][0]
    w_ih, w_hh, bias, extra = weights[0], weights[1], weights[2], {}
    if len(weights) == 5:  # builds whose kernel adds b_hh itself
        extra["bias_hh"] = weights[3]
    options = _plan.kernel_options(np.dtype(np.float32), x.shape[0], 1, D, H, 0, 1)
    return lambda: _lstm.forward_layer(x, w_ih, w_hh, bias, h, c, out, **extra, **options)


# -- the driver -------------------------------------------------------------------------


def _start(checkout, threads):
    env = dict(os.environ, PYTHONPATH=checkout, CYLSTM_PLAN="estimate")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    worker = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env, cwd="/")
    imported = worker.stdout.readline().strip()
    if not imported.startswith(os.path.abspath(checkout)):
        worker.kill()
        raise SystemExit(f"the worker for {checkout} imported cylstm from {imported!r}")
    return worker


def _block(worker, group, rounds):
    """{case: ([ns per call], minor page faults)} of `rounds` rounds of the group's
    cases, alternating."""
    worker.stdin.write(f"{','.join(group)} {rounds}\n")
    worker.stdin.flush()
    times, faults = json.loads(worker.stdout.readline())
    return dict(zip(group, zip(times, faults)))


def main(argv=None):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", default=here, help="checkout to time (default: this one)")
    parser.add_argument("--old", help="another built checkout to time side by side")
    parser.add_argument("--rounds", type=int, default=30, help="blocks per case and build")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker()
    builds = {"new": args.new}
    if args.old:
        builds["old"] = args.old
    workers = {name: _start(path, args.threads) for name, path in builds.items()}
    times = {(name, case): [] for name in builds for case in CASES}
    faults = dict.fromkeys(times, 0)
    order = list(builds)
    for round_ in range(args.rounds):
        for group, rounds in GROUPS.items():
            for name in order[round_ % len(order):] + order[:round_ % len(order)]:
                for case, (values, count) in _block(workers[name], group, rounds).items():
                    times[name, case] += values
                    faults[name, case] += count
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    from cylstm.bench.machine import cpu_model  # the parent runs this checkout's cylstm

    print(f"{cpu_model()}, {os.cpu_count()} CPUs, BLAS threads {args.threads}, "
          f"{args.rounds} rounds; median us per call (10th percentile: less hit by load) "
          "and minor page faults per call")
    print(f"{'case':<10}" + "".join(f"{name + ' (' + path + ')':>34}"
                                    for name, path in builds.items()))
    medians = {}
    for case in CASES:
        cells = []
        for name in builds:
            values = times[name, case]
            medians[name, case] = statistics.median(values) / 1e3
            tenth = statistics.quantiles(values, n=10)[0] / 1e3
            per_call = faults[name, case] / len(values)
            cells.append(f"{medians[name, case]:12.2f} ({tenth:.2f}) {per_call:5.1f}")
        print(f"{case:<10}" + "".join(f"{cell:>34}" for cell in cells))
    print("median ratio over neighbouring calls (interquartile range):")
    for name in builds:
        for top, bottom in RATIOS:
            ratios = [a / b for a, b in zip(times[name, top], times[name, bottom])]
            quartiles = statistics.quantiles(ratios, n=4)
            print(f"  {name}: {top} / {bottom} = {statistics.median(ratios):.4f} "
                  f"({quartiles[0]:.3f}-{quartiles[2]:.3f}, {len(ratios)} pairs)")
    if args.old:
        print("new / old, ratio of the medians:")
        for case in CASES:
            print(f"  {case}: {medians['new', case] / medians['old', case]:.3f}")


if __name__ == "__main__":
    main()
