#!/usr/bin/env python3
"""Run cylstm's benchmark: cylstm vs. its BLAS floor, NumPy, PyTorch and ONNX Runtime.

    python benchmarks/run.py --quick      # about a minute: everything, 1 and 2 threads
    python benchmarks/run.py --configs a,b --threads 1 --json out.json --markdown out.md
    python benchmarks/run.py --configs bidir,varlen,train-c,train-s,stream --png out.png
    python benchmarks/run.py --quick --check-baseline benchmarks/baseline.json   # CI check

The main table (configs a-e: one layer, forward) is followed by sections for a two-layer
bidirectional model, variable lengths, training steps and streaming latency, and by the speed
goals, each ratio next to its goal (MISS when missed).

This is a thin wrapper over ``cylstm.benchmark.main``; it times the *installed* cylstm (build and
install it first, e.g. ``pip install .``), and is equivalent to ``python -m cylstm.benchmark``.
See benchmarks/README.md for what is measured and how to read the table.
"""
import sys

try:
    from cylstm.benchmark import main
except ImportError as exc:
    sys.exit(f"cannot import cylstm.benchmark: {exc}\n"
             "Build and install cylstm first (pip install . from the checkout).")

if __name__ == "__main__":
    sys.exit(main())
