# The two commands of the README: `make run` and `make test` (each sets up what it needs).
SCENARIO ?= home-health
ARGS ?=

.PHONY: run test lint

run:
	@scripts/setup-venv.sh
	.venv/bin/twin run $(SCENARIO) $(ARGS)

test:
	@scripts/setup-venv.sh test
	@scripts/install-browser.sh
	.venv/bin/python -m pytest -q $(ARGS)

lint:
	@scripts/setup-venv.sh test
	.venv/bin/ruff check .
	.venv/bin/ruff format --check twin agents broker usecases tests benchmarks
	.venv/bin/mypy twin agents broker usecases
