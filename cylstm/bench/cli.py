"""``python -m cylstm bench``: run the benchmark (or report on a saved run), print the tables,
write the files asked for, check the baseline; ``--dask`` runs cylstm.dask's benchmark."""

import argparse
import json
import sys

from .._atomic import atomic_write
from .baseline import BASELINE_FACTOR, check_baseline, make_baseline
from .configs import CONFIGS, EXTRA_CONFIGS
from .report import format_markdown, format_table, plot_png
from .runner import run
from .sections import EXTRA_IMPLS, IMPLS
from .timing import SETTLE_MAX

PROG = "python -m cylstm bench"


def _parser():
    names = list(CONFIGS) + list(EXTRA_CONFIGS)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Time cylstm's LSTM against its BLAS floor, NumPy, PyTorch and ONNX "
                    "Runtime. Configs (T, B, D, H): "
                    + ", ".join(f"{k}={v}" for k, v in CONFIGS.items()) + "; sections: "
                    + ", ".join(f"{k}={v[1]} ({v[0]})" for k, v in EXTRA_CONFIGS.items())
                    + ".",
        epilog=f"{PROG} --dask [--quick] [--json PATH] times cylstm.dask instead "
               "(needs dask[array] and distributed).")
    parser.add_argument("--quick", action="store_true",
                        help="a few repeats per cell (about a minute for everything)")
    parser.add_argument("--configs", default=",".join(names),
                        help="comma-separated config names (default: all): " + ",".join(names))
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated thread counts (default: 1,2; stream: 1 only)")
    parser.add_argument("--impls", default=None,
                        help="comma-separated implementations (default: all installed): "
                             + ",".join(IMPLS + EXTRA_IMPLS))
    parser.add_argument("--repeats", type=int, default=None,
                        help="fixed number of timed repeats per cell (default: time budget)")
    parser.add_argument("--settle", type=float, default=SETTLE_MAX, metavar="SECONDS",
                        help="before each timed call, wait up to this long for idle worker "
                             f"threads to stop spinning (default: {SETTLE_MAX}; 0: no wait)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each cell, wait up to this long for other processes to "
                             "leave the CPUs idle (for shared machines; default: 0)")
    parser.add_argument("--goals", action="store_true",
                        help="also list the speed goals (cylstm against its BLAS floor, "
                             "PyTorch and ONNX Runtime, and two threads against one) and "
                             "whether each holds in this run, in the table, --markdown and --png")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write a Markdown report")
    parser.add_argument("--png", metavar="PATH",
                        help="also draw the main table (and with --goals the goals) as a PNG "
                             "(needs matplotlib)")
    parser.add_argument("--check-baseline", metavar="PATH",
                        help="compare the key ratios with this baseline JSON; exit 1 when one "
                             "exceeds the baseline's factor (1.5) times its baseline value")
    parser.add_argument("--baseline-factor", type=float, default=None, metavar="F",
                        help="override the baseline file's factor")
    parser.add_argument("--write-baseline", metavar="PATH",
                        help="write this run's key ratios as a new baseline JSON")
    parser.add_argument("--from-json", metavar="PATH",
                        help="do not run: read a result written by --json and report on it "
                             "(tables, --markdown, --png, --check-baseline)")
    parser.add_argument("--split", action="store_true",
                        help="at n > 1 threads run cylstm with LSTM(num_threads=n) (batch or "
                             "directions split over threads), not as one time loop over "
                             "n-thread BLAS (the default, and the faster on 2 cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def main(argv=None):
    """Command-line entry: run the benchmark, print the tables; return the exit status: 1 when
    an output disagrees with cylstm's, cylstm fails, or a ratio regressed grossly against
    --check-baseline; else 0 (goals that do not hold never fail)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--dask" in argv:  # cylstm.dask's benchmark, a room of its own
        from . import dask

        return dask.main([arg for arg in argv if arg != "--dask"])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
    else:
        try:
            result = run(configs=args.configs, threads=args.threads, quick=args.quick,
                         progress=not args.no_progress, impls=args.impls, repeats=args.repeats,
                         settle=args.settle, wait_idle=args.wait_idle,
                         split_threads=args.split)
        except ValueError as exc:
            parser.error(str(exc))
    print(format_table(result, goals=args.goals))
    if args.json and not args.from_json:
        _write_json(args.json, result)
    if args.markdown:
        with atomic_write(args.markdown, "w") as f:
            f.write(format_markdown(result, goals=args.goals))
    if args.png and not plot_png(result, args.png, goals=args.goals):
        print(f"note: matplotlib is not installed: no chart written to {args.png}")
    if args.write_baseline:
        baseline = make_baseline(result, factor=args.baseline_factor or BASELINE_FACTOR)
        _write_json(args.write_baseline, baseline)
        print(f"baseline with {len(baseline['ratios'])} ratios written to {args.write_baseline}")
    failed = [row for row in result["rows"]
              if row["agrees"] is False or (row["impl"] == "cylstm" and row["error"])]
    status = 1 if failed else 0
    if args.check_baseline:
        ok, lines = check_baseline(result, args.check_baseline, factor=args.baseline_factor)
        print("")
        print(f"regression check against {args.check_baseline} (ratios only):")
        print("\n".join(f"  {line}" for line in lines))
        print("regression check: " + ("passed" if ok else "FAILED"))
        if not ok:
            status = 1
    return status
