#!/usr/bin/env bash
# Build the cylstm wheel into dist/ in an isolated build environment
# (setuptools, Cython >= 3.1, numpy >= 2 and scipy come from the index).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

rm -rf "$DIST" "$REPO/build"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$DIST" "$REPO"
echo "built $(the_wheel)"
