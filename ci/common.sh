# Shared by the ci/ scripts: where things are, and fresh virtual environments.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# Build output: wheels and sdists are added here, nothing here is ever deleted.
DIST="${CYLSTM_DIST:-$REPO/dist}"
RESULTS="${CYLSTM_RESULTS:-$REPO/bench-results}"

# Venvs and build trees go under CYLSTM_WORK when it is set (.ci/run makes one per
# run, so that ci/bench.sh finds the venv ci/test.sh made, and removes it after);
# otherwise under a fresh temporary folder that this script removes when it exits.
if [ -n "${CYLSTM_WORK:-}" ]; then
    WORK="$CYLSTM_WORK"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
fi
export CYLSTM_TEST_VENV="${CYLSTM_TEST_VENV:-$WORK/test-venv}"

# py_tag: the wheel tag of $PYTHON, e.g. cp311.
py_tag() {
    "$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])'
}

# new_venv DIR: a fresh virtual environment with an up-to-date pip. DIR must not
# exist, or be a venv that new_venv made: nothing else is ever replaced.
new_venv() {
    if [ -e "$1" ] && [ ! -f "$1/.made-by-cylstm-ci" ]; then
        echo "refusing to replace $1: it is not a venv that ci/ made" >&2
        return 1
    fi
    "$PYTHON" -m venv --clear "$1"
    touch "$1/.made-by-cylstm-ci"
    "$1/bin/python" -m pip install --quiet --upgrade pip
}

# the_wheel: the newest cylstm wheel in $DIST for $PYTHON (ci/build.sh makes it).
the_wheel() {
    local wheel tag
    tag="$(py_tag)"
    wheel="$(ls -t "$DIST"/cylstm-*-"$tag"-"$tag"-*.whl 2>/dev/null | head -n 1)"
    if [ -z "$wheel" ]; then
        echo "no cylstm $tag wheel in $DIST: run ci/build.sh first" >&2
        return 1
    fi
    echo "$wheel"
}

# the_sdist: the newest cylstm sdist in $DIST (ci/build.sh builds the wheel from it).
the_sdist() {
    local sdist
    sdist="$(ls -t "$DIST"/cylstm-*.tar.gz 2>/dev/null | head -n 1)"
    if [ -z "$sdist" ]; then
        echo "no cylstm sdist in $DIST: run ci/build.sh first" >&2
        return 1
    fi
    echo "$sdist"
}

# unpacked_sdist: the sdist unpacked in a fresh folder under $WORK; prints its root.
unpacked_sdist() {
    local dir
    dir="$(mktemp -d "$WORK/sdist.XXXXXX")"
    tar -xzf "$(the_sdist)" -C "$dir"
    echo "$dir"/cylstm-*
}
