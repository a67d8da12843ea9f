"""`python -m cylstm`: what is installed, the self-check and one timing line, with no speed
goals; `check` and `info` on their own."""

import re

import cylstm
from cylstm import __main__ as cli
from cylstm.bench import machine


def test_default_prints_inventory_self_check_and_one_timing_line(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"cylstm {cylstm.__version__}"
    assert any(line.startswith("BLAS: ") for line in lines)
    assert any(line.startswith("gate math SIMD path: ") for line in lines)
    assert sum(line.rstrip().endswith(" ok") for line in lines) == 4  # 2 dtypes x 2 shapes
    timing = [line for line in lines if re.search(r"\d ms\b", line)]
    assert len(timing) == 1 and "cylstm" in timing[0], timing
    for word in ("goal", "MISS", "strict", "issue", "target"):
        assert word not in out, word


def test_self_check_meets_its_tolerances():
    results = cli.self_check()
    assert len(results) == 4
    for description, diff, tolerance, passed in results:
        assert passed and diff <= tolerance, description
        assert tolerance == (1e-5 if description.startswith("float32") else 1e-12)


def test_check_and_info(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("self-check against a float64 NumPy LSTM:")
    assert "FAILED" not in out and "BLAS" not in out
    assert cli.main(["info"]) == 0
    assert capsys.readouterr().out.splitlines() == machine.describe()  # the one inventory


def test_unknown_command(capsys):
    assert cli.main(["benchmark"]) == 2
    assert "unknown command 'benchmark'" in capsys.readouterr().err
