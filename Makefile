# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv themselves.
.PHONY: setup demo test test-fast bench lint

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/sf-pipeline demo

test: setup lint
	@scripts/ensure-postgres.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-nginx.sh
	.venv/bin/pytest

# ruff check and ruff format --check (scripts/lint.sh --fix formats and applies the safe fixes)
lint: setup
	@scripts/lint.sh
