"""`python -m cylstm`: what is installed, whether it computes right, how fast one call is.

    python -m cylstm            what is installed, the self-check and one timing line
    python -m cylstm info       versions, BLAS and SIMD path
    python -m cylstm check      compare the kernel with a float64 NumPy LSTM
    python -m cylstm plan       the plan (kernel strategy) for configs a-e on this
                                machine, and what each candidate took
    python -m cylstm bench ...  the benchmark against NumPy, PyTorch and ONNX Runtime
                                (options: python -m cylstm bench -h)
"""
import sys

import numpy as np

from . import LSTM
from .bench import machine
from .numpy_lstm import lstm_numpy

# Largest difference from the float64 NumPy LSTM that `check` accepts.
CHECK_TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

# The shape of the one timing line: config c of the benchmark, a small batch.
TIMING_CONFIG = "c"


def self_check(seed=0):
    """Compare cylstm with the float64 NumPy LSTM on small random problems.

    Returns a list of (description, max abs difference, tolerance, passed).
    """
    rng = np.random.default_rng(seed)
    results = []
    for dtype in (np.float32, np.float64):
        for steps, batch, inputs, hidden in ((50, 1, 7, 13), (20, 5, 16, 32)):
            model = LSTM(inputs, hidden, dtype=dtype, seed=rng)
            x = rng.standard_normal((steps, batch, inputs))
            h0 = rng.standard_normal((1, batch, hidden))
            c0 = rng.standard_normal((1, batch, hidden))
            output, (h_n, c_n) = model(x.astype(dtype), (h0.astype(dtype), c0.astype(dtype)))
            weights = {name: value.astype(np.float64) for name, value in model.state_dict().items()}
            expected = lstm_numpy(x, weights["weight_ih_l0"], weights["weight_hh_l0"],
                                  weights["bias_ih_l0"] + weights["bias_hh_l0"], h0[0], c0[0])
            diff = max(float(np.max(np.abs(got - want)))
                       for got, want in zip((output, h_n[0], c_n[0]), expected))
            tolerance = CHECK_TOLERANCE[np.dtype(dtype)]
            results.append((f"{np.dtype(dtype).name} T={steps} B={batch} D={inputs} H={hidden}",
                            diff, tolerance, diff <= tolerance))
    return results


def run_check():
    ok = True
    for description, diff, tolerance, passed in self_check():
        ok &= passed
        print(f"  {description:32s} max |diff| {diff:.2e} (<= {tolerance:.0e}) "
              f"{'ok' if passed else 'FAILED'}")
    return ok


def timing_line():
    """One line: cylstm and the NumPy LSTM on one shape, timed side by side (a second or so)."""
    from .bench import run

    result = run(configs=[TIMING_CONFIG], threads=(1,), quick=True, impls=["cylstm", "numpy"],
                 repeats=3, settle=0)
    times = {row["impl"]: row["median_ms"] for row in result["rows"]}
    T, B, D, H = (result["rows"][0][key] for key in "TBDH")
    threads = "one BLAS thread" if result["rows"][0]["threads_set"] else "default BLAS threads"
    line = (f"one forward pass, T={T} B={B} D={D} H={H}, float32, {threads}, median of 3: "
            f"cylstm {times['cylstm']:.2f} ms")
    if times.get("numpy"):
        line += f", the NumPy LSTM {times['numpy']:.1f} ms"
    return line


def plan_table():
    """The plans for the benchmark's configurations a-e, measured now (whatever the mode)."""
    from . import _plan, plans
    from .bench.configs import CONFIGS, DTYPE

    # A planner of its own: this process's mode and plans stay as they are.
    planner = _plan.Planner("measure")
    shapes = [_plan.shape_of(DTYPE, T, B, D, H, 0) for T, B, D, H in CONFIGS.values()]
    for shape in shapes:
        planner.plan(shape)
    lines = [f"plans on this machine ({machine.cpu_model()}, gate math: {machine.simd_path()}):",
             plans.describe(shapes, planner)]
    lines.append("configs: " + ", ".join(f"{name} = (T, B, D, H) {shape}"
                                          for name, shape in CONFIGS.items()))
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "all"
    if command in ("-h", "--help"):
        print(__doc__)
        return 0
    if command == "bench":
        from .bench.cli import main as bench_main

        return bench_main(argv)
    if command == "plan":
        print(plan_table())
        return 0
    if command not in ("all", "info", "check"):
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    if command in ("all", "info"):
        print("\n".join(machine.describe()))
    ok = True
    if command in ("all", "check"):
        print("self-check against a float64 NumPy LSTM:")
        ok = run_check()
    if command == "all":
        print(timing_line())
        print("(`python -m cylstm bench` times more shapes, against PyTorch and ONNX Runtime too)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
