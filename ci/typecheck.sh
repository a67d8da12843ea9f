#!/usr/bin/env bash
# Type check: mypy on the package ([tool.mypy] in pyproject.toml), with the mypy,
# NumPy and SciPy that pip picks today, in a throwaway venv. The extension is
# typed by cylstm/_lstm.pyi, so nothing is built.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(mktemp -d)"
trap 'rm -rf "$VENV"' EXIT

"${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet mypy numpy scipy
"$VENV/bin/python" -c "import mypy.version, numpy, scipy; print('mypy', mypy.version.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
cd "$REPO"
"$VENV/bin/python" -m mypy --cache-dir "$VENV/mypy-cache"  # no cache left in the checkout
