#!/usr/bin/env bash
# Reproduces the "Results" table of the README: builds the suite, gives AutoGluon an interpreter
# of its own (it pins an older pandas than mlestar's environment), then runs mlestar and every
# baseline at the same budget on each competition. Resumable: run it again to continue.
#
#   bash benchmarks/results.sh [TIME_LIMIT_S] [OUT]        # defaults: 90 .bench/results
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT="${1:-90}"
OUT="${2:-.bench/results}"
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/mlestar ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q -e '.[examples]' 'flaml==2.7.0' 'matplotlib>=3.8'

AG=.bench/venv-autogluon
if [ ! -x "$AG/bin/python" ]; then
  "$PY" -m venv "$AG"
fi
"$AG/bin/pip" install -q -e . 'autogluon.tabular[lightgbm,catboost,xgboost,fastai]==1.6.3' 'torch==2.13.0'

.venv/bin/python benchmarks/build_suite.py .bench/suite
.venv/bin/python benchmarks/compare.py .bench/suite --time-limit "$LIMIT" --out "$OUT" \
  --tools mlestar,plain,flaml,autogluon,autogluon-best --python "autogluon=$AG/bin/python"
cat "$OUT/table.md"
