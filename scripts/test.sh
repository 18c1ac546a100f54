#!/usr/bin/env bash
# Install everything from nothing and run the whole suite (what CI runs).
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[models,test,ray]'

# The official vendor clients live in their own environment (their pins differ).
python3 -m venv .venv-clients
.venv-clients/bin/python -m pip install -q -r tests/clients/requirements.txt
export EVALDOCK_CLIENTS_PYTHON="$PWD/.venv-clients/bin/python"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash scripts/typecheck.sh
.venv/bin/pytest "$@"
# moto's server mode: the API suites again, over real HTTP against `evaldock serve`.
EVALDOCK_TEST_SERVER=1 .venv/bin/pytest "$@" \
  tests/{objective,marqtune,spice,qianfan,oxen,openai}/test_api.py
