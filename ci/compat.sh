#!/usr/bin/env bash
# The same wheel against an old NumPy 1.x and SciPy, with no framework
# installed: what a user with old NumPy code gets from pip.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="${CYLSTM_COMPAT_VENV:-${TMPDIR:-/tmp}/cylstm-compat-venv}"
OLD_STACK="${CYLSTM_OLD_STACK:-numpy==1.26.4 scipy==1.13.1}"

new_venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install --quiet $OLD_STACK "$(the_wheel)" pytest hypothesis
"$VENV/bin/python" -c "import numpy, scipy; print('numpy', numpy.__version__, 'scipy', scipy.__version__)"

cd "$(mktemp -d)"
"$VENV/bin/python" -m cylstm check
"$VENV/bin/python" -m pytest "$REPO/tests" -p no:cacheprovider -q "$@"
