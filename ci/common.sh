# Shared by the ci/ scripts: where things are, and a fresh virtual environment.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
DIST="${CYLSTM_DIST:-$REPO/dist}"
RESULTS="${CYLSTM_RESULTS:-$REPO/bench-results}"

# new_venv DIR: a clean virtual environment with an up-to-date pip.
new_venv() {
    rm -rf "$1"
    "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip
}

# the_wheel: the cylstm wheel that ci/build.sh made.
the_wheel() {
    local wheel
    wheel="$(ls -t "$DIST"/cylstm-*.whl 2>/dev/null | head -n 1)"
    if [ -z "$wheel" ]; then
        echo "no cylstm wheel in $DIST: run ci/build.sh first" >&2
        return 1
    fi
    echo "$wheel"
}
