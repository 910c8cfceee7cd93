# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv themselves.
.PHONY: setup demo test test-fast bench lint

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/sf-pipeline demo

test: setup
	@scripts/ensure-postgres.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-nginx.sh
	.venv/bin/pytest

lint: setup
	.venv/bin/ruff check sf_pipeline sf_pipeline_tests
