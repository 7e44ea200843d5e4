# mqlab: every target creates the virtualenv itself (idempotent; a no-op when nothing changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: venv demo test lint format compare clean

venv: $(STAMP)

# Reinstalled when a package appears: the editable install maps the top-level packages it saw.
$(STAMP): pyproject.toml $(wildcard */__init__.py)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lab.demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

compare: $(STAMP)
	$(BIN)/mqlab compare $(ARGS)

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache *.egg-info
