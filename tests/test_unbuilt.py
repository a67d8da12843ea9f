"""A source checkout whose extension is not built says how to build it."""
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "cylstm"


def test_import_without_the_extension_explains_how_to_build(tmp_path):
    package = tmp_path / "cylstm"
    package.mkdir()
    for module in SOURCE.glob("*.py"):  # the Python files only: no compiled _lstm
        shutil.copy(module, package / module.name)
    result = subprocess.run(
        [sys.executable, "-c", "import cylstm"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "not built" in result.stderr
    assert "pip install ." in result.stderr
