# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= watcher.yml

.PHONY: run test lint bench clean

$(BIN)/python:
	scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,apprise]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/watcher run -c $(CONFIG)

test: $(VENV)/.test-installed
	scripts/install-debian-deps.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(VENV)/.test-installed
	scripts/install-debian-deps.sh --bench
	$(BIN)/python bench/product_bench.py --window 15
	$(BIN)/python bench/site_bench.py --targets 2000 --ssh-servers 200 --duration 90

clean:
	rm -rf $(VENV) *.egg-info
