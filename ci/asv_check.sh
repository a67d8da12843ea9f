#!/usr/bin/env bash
# The asv suite (benchmarks/benchmarks/) runs: asv, installed into a throwaway
# venv, runs every benchmark once (--quick, results not saved) with the Python
# of the test environment, where ci/test.sh installed the cylstm wheel, torch
# and onnxruntime. Fails when a benchmark cannot be imported or raises.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="$CYLSTM_TEST_VENV"
TMP="$(mktemp -d "$WORK/asv.XXXXXX")"
"$PYTHON" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install --quiet --upgrade pip
"$TMP/venv/bin/python" -m pip install --quiet asv
# The benchmarks run in the test environment's Python, which needs asv's runner
# (pure Python, the version asv just pulled in): a copy on its path only. asv
# passes PYTHONPATH to an "existing" environment; its runner keeps on sys.path
# only what ASV_PYTHONPATH also names.
RUNNER_VERSION="$("$TMP/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("asv_runner"))')"
"$TMP/venv/bin/python" -m pip install --quiet --no-deps --target "$TMP/runner" "asv_runner==$RUNNER_VERSION"
export PYTHONPATH="$TMP/runner"
export ASV_PYTHONPATH="$TMP/runner${ASV_PYTHONPATH:+:$ASV_PYTHONPATH}"
export HOME="$TMP"  # asv keeps its machine description in ~/.asv-machine.json

# The suite's configuration, with what asv writes (even a dry run writes its
# machine and benchmark lists) sent to $TMP, so that the checkout stays clean.
"$TMP/venv/bin/python" - "$REPO/benchmarks" "$TMP" <<'PY'
import json, sys
import json5  # asv's own dependency: asv.conf.json has comments
folder, tmp = sys.argv[1:]
with open(f"{folder}/asv.conf.json") as f:
    conf = json5.load(f)
conf.update(repo=f"{folder}/..", benchmark_dir=f"{folder}/benchmarks", env_dir=f"{tmp}/env",
            results_dir=f"{tmp}/results", html_dir=f"{tmp}/html")
with open(f"{tmp}/asv.conf.json", "w") as f:
    json.dump(conf, f, indent=1)
PY
cd "$TMP"
ASV="$TMP/venv/bin/asv"
"$ASV" machine --yes --machine ci >/dev/null
"$ASV" check -E "existing:$VENV/bin/python"
"$ASV" run -E "existing:$VENV/bin/python" --machine ci --quick --dry-run --show-stderr
