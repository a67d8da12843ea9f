"""`python -m cylstm`: what is installed, whether it computes right, how fast it is.

    python -m cylstm            info, self-check and a short benchmark
    python -m cylstm info       versions, BLAS and SIMD path
    python -m cylstm check      compare the kernel with a float64 NumPy LSTM
    python -m cylstm bench ...  the benchmark (options: python -m cylstm bench -h)
"""
import platform
import sys

import numpy as np

from . import LSTM, __version__, _lstm
from .numpy_lstm import lstm_numpy

# Largest difference from the float64 NumPy LSTM that `check` accepts.
CHECK_TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def blas_description():
    """The BLAS scipy calls, from threadpoolctl when installed, else scipy's build info."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)
        from threadpoolctl import threadpool_info

        for library in threadpool_info():
            if library["user_api"] == "blas" and "scipy" in library["filepath"] \
                    and "numpy.libs" not in library["filepath"]:
                return (f"{library['internal_api']} {library['version']} "
                        f"({library.get('architecture', '?')} kernels, "
                        f"{library['num_threads']} threads)")
    except ImportError:
        pass
    try:
        import scipy

        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # older SciPy: no dict form of its config
        return "unknown (install threadpoolctl to see it)"


def info_lines():
    import scipy

    return [
        f"cylstm {__version__}",
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}",
        f"BLAS: {blas_description()} via scipy.linalg.cython_blas",
        f"gate math SIMD path: {_lstm.simd_path()}",
    ]


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


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "all"
    if command in ("-h", "--help"):
        print(__doc__)
        return 0
    if command == "bench":
        from . import benchmark

        return benchmark.main(argv)
    if command not in ("all", "info", "check"):
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    if command in ("all", "info"):
        print("\n".join(info_lines()))
    ok = True
    if command in ("all", "check"):
        print("self-check against a float64 NumPy LSTM:")
        ok = run_check()
    if command == "all":
        from . import benchmark

        print("short benchmark (float32, one thread, median ms; "
              "`python -m cylstm bench` runs the full matrix):")
        result = benchmark.run(configs=["a", "c"], threads=(1,), quick=True)
        print(benchmark.format_table(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
