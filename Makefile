# Two entry points: `make demo` (the monitor on the embedded runtime, generated traffic)
# and `make test` (lint, types, the whole test suite). Both create .venv when missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lupus-stream demo --out demo-out

lint: $(STAMP)
	$(BIN)/ruff check lupus_stream tests $(wildcard benchmarks)
	$(BIN)/ruff format --check lupus_stream tests $(wildcard benchmarks)
	$(BIN)/mypy lupus_stream

# scripts/test-services starts a real Redis and a single-node Kafka for tests/integration,
# runs pytest with their addresses, and stops them afterwards.
test: lint
	scripts/test-services $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-out lupus-data .mypy_cache .ruff_cache .pytest_cache
