#!/usr/bin/env bash
# The test command: build the sdist and the wheel from it (ci/build.sh), install
# the wheel into a fresh virtual environment with the test extras (torch, onnx,
# onnxruntime, keras on the torch backend, hypothesis), and run the sdist's own
# tests from outside any source tree, so the tests see the installed package and
# prove the sdist complete. ci/packaging.sh checks the sdist holds every tracked
# test file, so these are the repository's tests.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="$CYLSTM_TEST_VENV"
# torch 2.13.0 has a CPU build; elsewhere point CYLSTM_TORCH_INDEX at a CPU index.
TORCH_SPEC="${CYLSTM_TORCH_SPEC:-torch==2.13.0}"

[ "${CYLSTM_SKIP_BUILD:-0}" = 1 ] || bash "$REPO/ci/build.sh"
new_venv "$VENV"
"$VENV/bin/pip" install --quiet "$(the_wheel)" pytest hypothesis threadpoolctl onnx onnxruntime keras \
    statsmodels matplotlib tqdm "dask[array]" distributed
"$VENV/bin/pip" install --quiet ${CYLSTM_TORCH_INDEX:+--extra-index-url "$CYLSTM_TORCH_INDEX"} "$TORCH_SPEC"

SOURCE="$(unpacked_sdist)"
cd "$(mktemp -d "$WORK/run.XXXXXX")"
"$VENV/bin/python" -m cylstm check
"$VENV/bin/python" -m pytest "$SOURCE/tests" -p no:cacheprovider -ra "$@"
