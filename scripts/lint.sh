#!/usr/bin/env bash
# The linters, as `make test` and CI run them before the tests: `ruff check` (rules in pyproject.toml,
# [tool.ruff]) and `ruff format --check`. With --fix: format the code and apply ruff's safe fixes first, then
# check (what is left needs a person). Ruff is pinned in pyproject.toml's dev extra (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF=${RUFF:-.venv/bin/ruff}
PATHS=(sf_pipeline sf_pipeline_tests scripts)
if [ "${1:-}" = "--fix" ]; then
  "$RUFF" format "${PATHS[@]}"
  "$RUFF" check --fix "${PATHS[@]}" || true
fi
status=0
"$RUFF" check "${PATHS[@]}" || {
  status=1
  echo "lint: ruff check found the problems above (counts by rule: $RUFF check --statistics)"
}
"$RUFF" format --check "${PATHS[@]}" >/dev/null || {
  status=1
  "$RUFF" format --check "${PATHS[@]}" 2>&1 | tail -n 1 || true
  echo "lint: files not formatted as ruff format would: run scripts/lint.sh --fix"
}
[ "$status" -eq 0 ] && echo "lint: ruff check and ruff format --check passed"
exit "$status"
