# testio-mirror: the two README commands (`make demo`, `make test`) and the developer ones.
# Every target creates .venv on first use and reinstalls only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
SANDBOX_ARGS ?=
DATASET ?= S
BENCH_ARGS ?=

.PHONY: help install demo test reliability lint format sandbox bench clean

help:
	@echo "make demo     run the main job against the built-in sandbox"
	@echo "make test     run the whole test suite"
	@echo "make reliability  the long reliability suite (faults, crashes, concurrency, hostile input)"
	@echo "make lint     ruff check, ruff format --check, mypy --strict"
	@echo "make format   apply ruff's fixes and formatting"
	@echo "make sandbox  serve the simulated TestIO API (SANDBOX_ARGS='--port 9000 ...')"
	@echo "make bench    measure speed and memory (DATASET=S|M, BENCH_ARGS='--repeat 5')"
	@echo "make clean    remove .venv and caches"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "testio-mirror needs Python 3.11 or newer: run make with PYTHON=python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/testio-mirror demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

reliability: $(STAMP)
	TESTIO_RELIABILITY=long $(BIN)/python -m pytest tests/reliability --timeout 1800 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy --strict src

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench scripts
	$(BIN)/ruff format src tests bench scripts

sandbox: $(STAMP)
	$(BIN)/testio-mirror sandbox $(SANDBOX_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py --dataset $(DATASET) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info
