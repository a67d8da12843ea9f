#!/usr/bin/env bash
# The wheel on the Pythons and NumPy/SciPy releases users have, with no framework
# installed (the framework tests skip; ci/test.sh runs them): what pip gives a user
# with old NumPy code, on the lowest Python cylstm supports with the declared
# floors, and on the highest Python here with the current releases. Each runs
# `python -m cylstm check` and the sdist's tests against a wheel built for that
# Python (ci/build.sh, unless CYLSTM_SKIP_BUILD=1 and one is in $DIST).
#
# CYLSTM_COMPAT lists the runs, one per line: a Python command, then the stack.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# find_python X.Y...: the first of these versions that runs, from pyenv or PATH.
find_python() {
    local version candidate
    for version in "$@"; do
        for candidate in \
            $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -V -r) \
            "$(command -v "python$version" 2>/dev/null || true)"; do
            if [ -n "$candidate" ] && "$candidate" -c pass 2>/dev/null; then
                echo "$candidate"
                return
            fi
        done
    done
    echo "none of Python $* found (set CYLSTM_COMPAT to choose the runs)" >&2
    return 1
}

if [ -z "${CYLSTM_COMPAT:-}" ]; then
    LOWEST="$(find_python 3.9 3.10)"
    HIGHEST="$(find_python 3.14 3.13 3.12)"
    CYLSTM_COMPAT="$PYTHON numpy==1.26.4 scipy==1.13.1
$LOWEST numpy==1.22.4 scipy==1.9.3
$HIGHEST numpy scipy"
fi

the_sdist >/dev/null 2>&1 || bash "$REPO/ci/build.sh"
SOURCE="$(unpacked_sdist)"
failed=""
while read -r python stack <&3; do
    [ -n "$python" ] || continue
    export PYTHON="$python"
    echo "== $("$PYTHON" --version) with $stack"
    if [ "${CYLSTM_SKIP_BUILD:-0}" != 1 ] || ! the_wheel >/dev/null 2>&1; then
        CYLSTM_SDIST="$(the_sdist)" bash "$REPO/ci/build.sh"
    fi
    VENV="$(mktemp -d "$WORK/compat.XXXXXX")/venv"
    new_venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet --upgrade $stack "$(the_wheel)" pytest hypothesis
    "$VENV/bin/python" -c "import numpy, scipy; print('numpy', numpy.__version__, 'scipy', scipy.__version__)"
    # Every run goes ahead whatever an earlier one gave; the script fails at the end.
    (cd "$(mktemp -d "$WORK/run.XXXXXX")" \
        && "$VENV/bin/python" -m cylstm check \
        && "$VENV/bin/python" -m pytest "$SOURCE/tests" -p no:cacheprovider -q "$@") \
        || failed="$failed
  $("$PYTHON" --version) with $stack"
done 3<<< "$CYLSTM_COMPAT"
if [ -n "$failed" ]; then
    echo "failed:$failed" >&2
    exit 1
fi
