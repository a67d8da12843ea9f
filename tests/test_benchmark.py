"""The benchmark's pure parts (tables, goals, the regression check) on a small fake result, and
one tiny real run() with cylstm, floor and numpy only. Fast: no torch, no onnxruntime."""

import json

import numpy as np
import pytest

from cylstm import bench
from cylstm.bench import cli, goals as bench_goals


def _row(config, threads, impl, ms, section="forward", shape=(10, 2, 4, 8), agrees="auto",
         **extra):
    T, B, D, H = shape
    return {"config": config, "section": section, "T": T, "B": B, "D": D, "H": H,
            "threads": threads, "threads_set": True, "other_cpu": 0.0, "cell_seconds": 0.1,
            "impl": impl, "median_ms": ms, "min_ms": ms, "repeats": 3, "calls": 3,
            "max_abs_diff": None if impl in ("cylstm", "floor") else 0.0,
            "agrees": (None if impl in ("floor", "padded") else True) if agrees == "auto"
            else agrees, "error": None, **extra}


def fake_result():
    """Config a at 1 thread: cy/floor 1.2 (the 1.30 goal holds, the 1.10 one does not), cy/best
    0.5; config c at 1 and 2 threads: speed-up 1.25 (does not hold); a training row, a stream row and a
    lengths row with a mismatching torch."""
    rows = [
        _row("a", 1, "cylstm", 12.0), _row("a", 1, "floor", 10.0), _row("a", 1, "numpy", 60.0),
        _row("a", 1, "torch", 24.0), _row("a", 1, "onnxruntime", 30.0),
        _row("c", 1, "cylstm", 10.0), _row("c", 1, "floor", 9.5), _row("c", 1, "torch", 9.0),
        _row("c", 2, "cylstm", 8.0), _row("c", 2, "floor", 7.0), _row("c", 2, "torch", 6.0),
        _row("train-c", 1, "cylstm", 30.0, "training", peak_mb=31.2),
        _row("train-c", 1, "torch", 40.0, "training"),
        _row("stream", 1, "cylstm", 0.004, "stream", shape=(100, 1, 32, 64),
             steps_per_block=100),
        _row("stream", 1, "torch", 0.02, "stream", shape=(100, 1, 32, 64),
             steps_per_block=100),
        _row("varlen", 1, "cylstm", 5.0, "lengths", valid_fraction=0.6),
        _row("varlen", 1, "padded", 8.0, "lengths", valid_fraction=0.6),
        _row("varlen", 1, "torch", 6.0, "lengths", agrees=False, valid_fraction=0.6),
    ]
    return {"machine": {"cpu": "test CPU", "cpus_usable": 2, "versions": {"cylstm": "0"}},
            "settings": {"mode": "quick", "dtype": "float32"}, "rows": rows,
            "notes": ["a note"]}


def _goal(goals, config, measure, target):
    return next(g for g in goals if g["config"] == config and g["measure"] == measure
                and g["target"] == target)


def test_goals_of_a_fake_result():
    goals = bench_goals.goals(fake_result())
    assert _goal(goals, "a", "cylstm/floor", 1.30)["met"]
    strict = _goal(goals, "a", "cylstm/floor", 1.10)
    assert not strict["met"] and strict["ratio"] == pytest.approx(1.2)
    best = _goal(goals, "a", "cylstm/best", 0.80)  # over min(torch 24, ort 30)
    assert best["met"] and best["ratio"] == pytest.approx(0.5)
    speedup = _goal(goals, "c", "threads 1/2", 1.60)
    assert not speedup["met"] and speedup["ratio"] == pytest.approx(1.25)
    assert _goal(goals, "c", "cylstm/best", 1.15)["ratio"] == pytest.approx(10 / 9, abs=1e-4)
    assert _goal(goals, "train-c", "cylstm/torch", 1.00)["met"]
    assert _goal(goals, "stream", "cylstm/torch", 0.50)["ratio"] == pytest.approx(0.2)
    # Goals whose cells are missing are left out (config b; d and e).
    assert {g["config"] for g in goals} == {"a", "c", "train-c", "stream"}


def test_goal_compares_the_printed_ratio():
    result = fake_result()
    result["rows"][0]["median_ms"] = 13.004  # 1.3004 prints as 1.30: met
    assert _goal(bench_goals.goals(result), "a", "cylstm/floor", 1.30)["met"]


def test_format_table_of_a_fake_result():
    assert "goal" not in bench.format_table(fake_result())  # only when asked for
    text = bench.format_table(fake_result(), goals=True)
    lines = text.splitlines()
    assert lines[0].split() == ["config", "T", "B", "D", "H", "thr", "|", "cylstm", "floor",
                                "numpy", "torch", "ort", "|", "cy/floor", "cy/torch", "cy/ort",
                                "cy/numpy"]
    row_a = next(line for line in lines if line.startswith("a ")).split()
    assert row_a[6:] == ["|", "12.0", "10.0", "60.0", "24.0", "30.0", "|", "1.20", "0.50",
                         "0.40", "0.20"]
    assert "cylstm/floor 1.20, goal <= 1.10: does not hold" in text
    assert "cylstm/floor 1.20, goal <= 1.30: holds" in text
    assert "cylstm 1 thread / 2 threads 1.25, goal >= 1.60: does not hold" in text
    assert "cylstm/torch 0.20, goal <= 0.50: holds" in text
    for word in ("MISS", "strict", "issue"):  # no project-internal words
        assert word not in text
    # Section tables: microseconds for streaming, the peak memory, padded and the mismatch.
    stream = next(line for line in lines if line.startswith("stream ")).split()
    assert stream[-4:] == ["4.00", "20.0", "|", "0.20"]
    train = next(line for line in lines if line.startswith("train-c ")).split()
    assert train[-3:] == ["0.75", "|", "31.2"]
    varlen = next(line for line in lines if line.startswith("varlen ")).split()
    assert "60%" in varlen and "6.00!" in varlen and "0.62" in varlen  # cy/padded 5/8
    assert "note: a note" in text
    assert "7 of 9 hold on this machine" in text


def test_format_table_without_goals_or_sections():
    result = fake_result()
    result["rows"] = [dict(r, config="tiny") for r in result["rows"][:3]]
    text = bench.format_table(result, goals=True)
    assert "goal" not in text
    assert "training" not in text and "tiny" in text


def test_format_markdown_of_a_fake_result():
    assert "goal" not in bench.format_markdown(fake_result()).lower()
    md = bench.format_markdown(fake_result(), goals=True)
    assert md.startswith("# cylstm benchmark\n")
    assert "| config | T | B | D | H | thr | cylstm | floor | numpy | torch | ort |" in md
    assert "| a | 10 | 2 | 4 | 8 | 1 | 12.0 | 10.0 | 60.0 | 24.0 | 30.0 | 1.20 |" in md
    assert "## Training step" in md and "## Streaming" in md
    assert ("| a | gate math and Python layer add at most 10% to the BLAS calls | "
            "cylstm/floor 1.20 | &le; 1.10 | does not hold |") in md
    assert md.endswith("- a note\n")


def test_regression_check_passes_and_fails():
    result = fake_result()
    baseline = bench.make_baseline(result)
    assert baseline["ratios"] == {"a cylstm/floor": 1.2, "c cylstm/floor": pytest.approx(10 / 9.5,
                                                                                          abs=1e-4),
                                  "train-c cylstm/torch": 0.75, "stream cylstm/torch": 0.2}
    ok, lines = bench.check_baseline(result, baseline)
    assert ok and len(lines) == 4

    # Noise (1.4 x) passes, a gross regression (1.6 x) of one ratio fails.
    result["rows"][0]["median_ms"] = 12.0 * 1.4
    assert bench.check_baseline(result, baseline)[0]
    result["rows"][0]["median_ms"] = 12.0 * 1.6
    ok, lines = bench.check_baseline(result, baseline)
    assert not ok
    assert any(line.startswith("a cylstm/floor") and "REGRESSION" in line for line in lines)
    assert bench.check_baseline(result, baseline, factor=2.0)[0]

    # Absolute times never matter: everything 10 x slower is no regression.
    slow = fake_result()
    for row in slow["rows"]:
        row["median_ms"] *= 10
    assert bench.check_baseline(slow, baseline)[0]


def test_regression_check_skips_what_was_not_measured(tmp_path):
    result = fake_result()
    baseline = {"factor": 1.5, "ratios": {"b cylstm/floor": 1.0, "a cylstm/floor": 1.0}}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    ok, lines = bench.check_baseline(result, str(path))
    assert ok  # a: 1.2 <= 1.5; b: not run
    assert any(line.startswith("b cylstm/floor") and "skipped" in line for line in lines)


def test_command_line_on_a_saved_result(tmp_path, capsys):
    result_path, baseline_path = tmp_path / "result.json", tmp_path / "baseline.json"
    result_path.write_text(json.dumps(fake_result()))
    md = tmp_path / "report.md"
    assert cli.main(["--from-json", str(result_path), "--write-baseline",
                           str(baseline_path), "--markdown", str(md)]) == 1  # the mismatch
    assert json.loads(baseline_path.read_text())["ratios"]["stream cylstm/torch"] == 0.2
    assert md.read_text().startswith("# cylstm benchmark")
    baseline = json.loads(baseline_path.read_text())
    baseline["ratios"]["a cylstm/floor"] = 0.5  # 1.2 > 1.5 * 0.5: a regression
    baseline_path.write_text(json.dumps(baseline))
    fine = fake_result()
    fine["rows"] = [r for r in fine["rows"] if r["agrees"] is not False]
    result_path.write_text(json.dumps(fine))
    assert cli.main(["--from-json", str(result_path)]) == 0
    capsys.readouterr()
    assert cli.main(["--from-json", str(result_path), "--check-baseline",
                           str(baseline_path)]) == 1
    assert "regression check: FAILED" in capsys.readouterr().out


def test_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert bench.plot_png(fake_result(), str(path), goals=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_configs_and_impls():
    with pytest.raises(ValueError, match="unknown configs"):
        bench.run(configs=["z"], threads=(1,), quick=True)
    with pytest.raises(ValueError, match="unknown implementations"):
        bench.run(configs=["a"], threads=(1,), impls=["tensorflow"], quick=True)
    with pytest.raises(ValueError, match="4 positive ints"):
        bench.run(configs={"tiny": (5, 0, 3, 4)}, threads=(1,), quick=True)


def test_tiny_real_run():
    result = bench.run(configs={"tiny": (20, 2, 8, 16)}, threads=(1,), quick=True,
                           impls=["cylstm", "floor", "numpy"], repeats=3, settle=0)
    assert set(result) >= {"machine", "settings", "rows", "notes", "goals", "key_ratios"}
    assert result["settings"]["configs"] == {"tiny": [20, 2, 8, 16]}
    rows = {row["impl"]: row for row in result["rows"]}
    assert list(rows) == ["cylstm", "floor", "numpy"]
    for row in rows.values():
        assert row["config"] == "tiny" and row["section"] == "forward"
        assert (row["T"], row["B"], row["D"], row["H"], row["threads"]) == (20, 2, 8, 16, 1)
        assert row["median_ms"] > 0 and row["min_ms"] > 0
        assert row["repeats"] == 3 and row["error"] is None
    assert rows["numpy"]["agrees"] is True and rows["numpy"]["max_abs_diff"] < 1e-5
    assert rows["floor"]["agrees"] is None  # not an LSTM: not checked
    assert result["goals"] == [] and result["key_ratios"] == {}
    text = bench.format_table(result)
    assert text.splitlines()[2].startswith("tiny")
    json.dumps(result)  # the result is plain JSON


def test_tiny_real_sections():
    """The training and stream sections on tiny shapes, cylstm alone (no torch needed)."""
    result = bench.run(
        configs={"t": ("training", (6, 2, 3, 4)), "s": ("stream", (30, 1, 3, 4)),
                 "v": ("lengths", (8, 3, 3, 4))},
        threads=(1,), quick=True, impls=["cylstm", "padded"], repeats=2, settle=0)
    rows = {(row["config"], row["impl"]): row for row in result["rows"]}
    assert set(rows) == {("t", "cylstm"), ("s", "cylstm"), ("v", "cylstm"), ("v", "padded")}
    assert rows["t", "cylstm"]["peak_mb"] > 0
    # A stream repeat is a short block, 20 of them per repeat asked for.
    assert rows["s", "cylstm"]["calls"] == 2 * 20 * 30 and rows["s", "cylstm"]["repeats"] == 40
    assert 0.25 <= rows["v", "cylstm"]["valid_fraction"] <= 1
    assert all(row["median_ms"] > 0 for row in rows.values())
    assert np.isfinite([row["median_ms"] for row in rows.values()]).all()


def test_tiny_real_cells_section():
    """The variant cells' section: the plain model beside peepholes and rare activations on
    the same weights, each a real time, and each variant's output its own model's."""
    result = bench.run(configs={"k": ("cells", (5, 2, 3, 4))}, threads=(1,), quick=True,
                       impls=["cylstm", "peepholes", "activations"], repeats=2, settle=0)
    rows = {row["impl"]: row for row in result["rows"]}
    assert set(rows) == {"cylstm", "peepholes", "activations"}
    assert all(row["median_ms"] > 0 for row in rows.values())
    case = bench.configs.CellsCase(5, 2, 3, 4)
    assert case.peephole_model.peepholes and case.peephole_model.clip == 3.0
    np.testing.assert_array_equal(case.peephole_model.weight_ih_l0, case.model.weight_ih_l0)
    assert case.activation_model.activations[0][0].name == "hard_sigmoid"
    assert "cy/peep" in bench.format_table(result)


def test_goals_option_on_a_saved_result(tmp_path, capsys):
    path = tmp_path / "result.json"
    fine = fake_result()
    fine["rows"] = [r for r in fine["rows"] if r["agrees"] is not False]
    path.write_text(json.dumps(fine))
    assert cli.main(["--from-json", str(path)]) == 0
    assert "goal" not in capsys.readouterr().out
    assert cli.main(["--from-json", str(path), "--goals"]) == 0  # goals never fail a run
    out = capsys.readouterr().out
    assert "cylstm/floor 1.20, goal <= 1.10: does not hold" in out
    assert "over the faster of PyTorch and ONNX Runtime" in out


def test_tiny_real_run_against_torch_and_onnxruntime():
    """torch runs model.to_torch() and ONNX Runtime model.to_onnx(): same numbers as cylstm."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    result = bench.run(
        configs={"f": (12, 3, 5, 6), "b": ("bidirectional", (7, 2, 3, 4)),
                 "v": ("lengths", (9, 3, 3, 4))},
        threads=(1,), quick=True, impls=["cylstm", "torch", "onnxruntime"], repeats=2, settle=0)
    rows = {(row["config"], row["impl"]): row for row in result["rows"]}
    for config in ("f", "b", "v"):
        for impl in ("torch", "onnxruntime"):
            row = rows[config, impl]
            assert row["error"] is None and row["median_ms"] > 0, row
            assert row["agrees"] is True and row["max_abs_diff"] < 1e-5, row
