"""Every file the benchmark command writes (--json, --markdown, --write-baseline, --png) goes
through cylstm._atomic.atomic_write: a write that fails half-way leaves the file that was there
byte-identical and no temporary file. (cylstm.save is tested in test_files.py.)"""

import contextlib
import errno
import json
import os

import pytest

from cylstm import _atomic
from cylstm.bench import cli, report
from test_benchmark import fake_result

OUTPUTS = ["--json", "--markdown", "--write-baseline", "--png"]


class _FailingFile:
    """Passes `budget` bytes to `file`, then writes part of the next chunk and raises."""

    def __init__(self, file, budget, failure, folder):
        self._file, self._budget, self._failure, self._folder = file, budget, failure, folder
        self.files_at_failure = None

    def write(self, data):
        if len(data) >= self._budget:
            self._file.write(data[:self._budget])
            self._file.flush()
            self.files_at_failure = sorted(os.listdir(self._folder))
            raise self._failure
        self._budget -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


def _run(tmp_path, monkeypatch, option, target):
    result_path = tmp_path / "result.json"
    result_path.write_text(json.dumps(fake_result()))
    if option == "--json":  # written only after a run: the run returns the fake result
        monkeypatch.setattr(cli, "run", lambda **kwargs: fake_result())
        argv = ["--no-progress", "--json", str(target)]
    else:
        argv = ["--from-json", str(result_path), option, str(target)]
    return cli.main(argv)


NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("option, failure", [
    *((option, NO_SPACE) for option in OUTPUTS),
    ("--json", KeyboardInterrupt()), ("--markdown", KeyboardInterrupt()),   # (PNGs are slow)
], ids=[*(f"{option}-no-space" for option in OUTPUTS), "--json-interrupt",
        "--markdown-interrupt"])
def test_benchmark_output_failing_half_way(tmp_path, monkeypatch, option, failure):
    if option == "--png":
        pytest.importorskip("matplotlib")
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "previous"
    target.write_bytes(b"the previous contents\n")
    opened = []

    @contextlib.contextmanager
    def failing_write(path, mode="wb"):
        with _atomic.atomic_write(path, mode) as file:
            opened.append(_FailingFile(file, 10, failure, folder))
            yield opened[-1]

    monkeypatch.setattr(cli, "atomic_write", failing_write)  # --json, --markdown, baselines
    monkeypatch.setattr(report, "atomic_write", failing_write)  # --png
    with pytest.raises(type(failure)):
        _run(tmp_path, monkeypatch, option, target)
    # the failure came while a temporary file beside the target held the first bytes
    assert len(opened) == 1 and len(opened[0].files_at_failure) == 2, opened
    assert target.read_bytes() == b"the previous contents\n"
    assert os.listdir(folder) == ["previous"]


@pytest.mark.parametrize("option", OUTPUTS)
def test_benchmark_output_replaces_the_file(tmp_path, monkeypatch, option):
    if option == "--png":
        pytest.importorskip("matplotlib")
    target = tmp_path / "out"
    target.write_bytes(b"old")
    _run(tmp_path, monkeypatch, option, target)
    data = target.read_bytes()
    if option == "--png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    elif option == "--markdown":
        assert data.startswith(b"# cylstm benchmark")
    else:
        assert json.loads(data)  # a complete JSON document
    assert sorted(os.listdir(tmp_path)) == ["out", "result.json"]
