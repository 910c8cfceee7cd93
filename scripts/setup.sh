#!/usr/bin/env bash
# Create .venv from the project's own files (idempotent): Python 3.11, pinned dependencies, with the extras the
# tests and the demo need: dev (pytest, ruff, ...) and devorg (the local Salesforce org's server dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.sf-pipeline-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,devorg]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import sf_pipeline, dagster, dbt, simple_salesforce, sf_pipeline.devorg.runner"
  touch "$stamp"
fi
