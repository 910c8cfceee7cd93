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
	# bytecode caches on: with PYTHONDONTWRITEBYTECODE set, every xdist worker rewrites pytest's assertions again
	# (~15 s of CPU each) and every Dagster, dbt and devorg subprocess recompiles what it imports
	env -u PYTHONDONTWRITEBYTECODE .venv/bin/pytest

# ruff check and ruff format --check (scripts/lint.sh --fix formats and applies the safe fixes)
lint: setup
	@scripts/lint.sh
