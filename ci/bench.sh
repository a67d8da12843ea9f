#!/usr/bin/env bash
# The quick benchmark in the test environment; the table goes to the log and
# to bench-results/ (JSON, markdown, PNG), which CI keeps as an artifact. Fails
# only on a gross regression of a ratio against benchmarks/baseline.json
# (ratios, never absolute times: the machines are noisy); the speed goals are
# listed (--goals) but never fail it.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="${CYLSTM_TEST_VENV:-${TMPDIR:-/tmp}/cylstm-test-venv}"
mkdir -p "$RESULTS"
cd "$(mktemp -d)"
"$VENV/bin/python" -m cylstm bench --quick \
    --json "$RESULTS/bench-quick.json" --markdown "$RESULTS/bench-quick.md" \
    --png "$RESULTS/bench-quick.png" --goals \
    --check-baseline "$REPO/benchmarks/baseline.json" --no-progress "$@"
