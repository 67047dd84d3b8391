# cxone_sync: the README names these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install lock demo test lint format typecheck validate pytest soak soak-daemon bench dev local-stack ui-check clean

install: $(VENV)/.installed

## install: the package with its `dev` (tests, linters) and `local` (simulator, local S3 store,
## Snowflake emulator) extras, at the versions the tests passed with (constraints.txt)
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,local]'
	touch $@

## lock: pin constraints.txt to the versions installed in $(VENV) (after `make test` passed;
## to move to newer versions first: $(BIN)/pip install -U -e '.[dev,local]')
lock:
	$(BIN)/python .ci/lock.py

# The instance settings live in config/dagster.yaml (not the repository root, where `dagster dev`
# would warn that a dagster.yaml outside DAGSTER_HOME is ignored); DAGSTER_HOME gets a copy.
$(DAGSTER_HOME)/dagster.yaml: config/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp config/dagster.yaml $@

## demo: start the local stack, sync one simulated day of every category, print the results
## (WAREHOUSE=snowflake: into the local Snowflake emulator instead of DuckDB)
WAREHOUSE ?= duckdb
demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m cxone_sync.demo --warehouse $(WAREHOUSE)

## test: lint, type-check, validate the Dagster definitions, run the tests
test: install lint typecheck validate pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy cxone_sync cxone_sync_tests bench

validate: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

## pytest: two workers (the 2-core CI machine), whole files per worker (module fixtures stay put)
pytest: install
	$(BIN)/pytest -q -n 2 --dist loadfile

## soak: the long-running tests excluded from the default run (-s: the soak prints its summary)
soak: install
	$(BIN)/pytest -q -s -m soak

## soak-daemon: only the 7-day soak on the real daemon, keeping its logs (SOAK_ARGS=--short ...)
soak-daemon: install
	rm -rf $(CURDIR)/data/soak
	$(BIN)/python -m cxone_sync_tests.soak --workdir $(CURDIR)/data/soak $(SOAK_ARGS)

bench: install
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_merge.py

STACK_ENV := data/local-stack.env
STACK_ARGS ?=

## local-stack: the simulator and the local S3 store on loopback (Ctrl-C stops them); a live world
## (the last 3 days, following the wall clock); its environment goes to data/local-stack.env
local-stack: install
	$(BIN)/cxone-sync local-stack --env-file $(STACK_ENV) $(STACK_ARGS)

## dev: the Dagster UI against the local stack (start `make local-stack` in another terminal)
## (reads data/local-stack.env when the stack runs: partitions start where its history starts)
dev: install $(DAGSTER_HOME)/dagster.yaml
	@if [ -f $(STACK_ENV) ]; then echo "make dev: environment of the running local stack ($(STACK_ENV))"; \
	else echo "make dev: no $(STACK_ENV) (start \`make local-stack\` first for the live world)"; fi
	set -a; if [ -f $(STACK_ENV) ]; then . ./$(STACK_ENV); fi; set +a; \
	exec $(BIN)/dagster dev -w workspace.yaml

## ui-check: screenshots of the asset, checks and backfill pages after a UI backfill, taken by
## headless Chromium (Debian's package, installed here if missing) into data/ui-check/
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
ui-check: install
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,ui]'
	$(BIN)/python -m cxone_sync_tests.ui_check --out data/ui-check

clean:
	rm -rf data
