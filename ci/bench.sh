#!/usr/bin/env bash
# The quick benchmark in the test environment; the table goes to the log and
# to bench-results/ (JSON and markdown), which CI keeps as an artifact.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="${CYLSTM_TEST_VENV:-${TMPDIR:-/tmp}/cylstm-test-venv}"
mkdir -p "$RESULTS"
cd "$(mktemp -d)"
"$VENV/bin/python" -m cylstm bench --quick \
    --json "$RESULTS/bench-quick.json" --markdown "$RESULTS/bench-quick.md" "$@"
