"""cylstm's benchmark: cylstm against its BLAS floor, NumPy, PyTorch and ONNX Runtime.

Run ``python -m cylstm bench --quick`` for a table (``--help`` lists the options; ``--goals``
adds the speed goals). From Python, ``run()`` returns the raw results as a dict,
``format_table()`` and ``format_markdown()`` turn them into text, ``goals.goals()`` lists the
speed goals and whether each holds (the result has them too), ``check_baseline()`` compares the key ratios with a committed
baseline (a regression check for CI) and ``plot_png()`` draws a chart.

A room per job:

``configs``          the configurations (a to e, bidir, varlen, train-c, train-s, stream) and
                     the input and model of each
``implementations``  what is timed: cylstm, its kernel, the BLAS-only floor, NumPy, torch
                     (``model.to_torch()``), ONNX Runtime (``model.to_onnx()``)
``sections``         the kinds of cell: which implementations, checks and table columns
``timing``           interleaved timing of one cell, the output check, medians
``runner``           ``run()``: every cell, into one result
``machine``          the machine, BLAS and SIMD inventory (also ``python -m cylstm info``)
``ratios``, ``goals``, ``baseline``   ratios of a result, the speed goals, the CI check
``report``           tables, Markdown and PNG
``dask``             the benchmark of cylstm.dask (``--dask``)
``cli``              the command line

Only numpy and cylstm are needed to import it; torch, onnx, onnxruntime, threadpoolctl, tqdm,
matplotlib and dask are imported when used.
"""

from .baseline import BASELINE_FACTOR, BASELINE_RATIOS, check_baseline, key_ratios, make_baseline
from .configs import CONFIGS, EXTRA_CONFIGS
from .goals import GOALS
from .machine import machine_info
from .report import format_markdown, format_table, plot_png
from .runner import run
from .sections import EXTRA_IMPLS, IMPLS, SECTIONS
from .timing import TOLERANCE

__all__ = ["CONFIGS", "EXTRA_CONFIGS", "IMPLS", "EXTRA_IMPLS", "SECTIONS", "TOLERANCE", "GOALS",
           "BASELINE_RATIOS", "BASELINE_FACTOR", "run", "format_table", "format_markdown",
           "key_ratios", "make_baseline", "check_baseline", "plot_png", "machine_info"]
