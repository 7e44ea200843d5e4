# mqlab: every target creates the virtualenv itself (idempotent; a no-op when nothing changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: venv demo test test-fast lint format compare clean lock

# Variables given on the command line that no target reads (make ARG=--quick, a typo for ARGS):
# stop before anything runs, rather than run a target without them (the full compare, say).
KNOWN_VARIABLES := ARGS PYTHON
UNKNOWN_VARIABLES := $(filter-out $(KNOWN_VARIABLES),$(foreach v,$(.VARIABLES),\
	$(if $(filter command line,$(origin $(v))),$(v))))
ifneq ($(UNKNOWN_VARIABLES),)
$(error unknown variable(s) $(UNKNOWN_VARIABLES): options go in ARGS, e.g. make compare ARGS=--quick)
endif

venv: $(STAMP)

# Reinstalled when a package appears: the editable install maps the top-level packages it saw.
# Exact versions from constraints.txt, so results can be reproduced ("make lock" refreshes it).
$(STAMP): pyproject.toml constraints.txt $(wildcard */__init__.py)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lab.commands.demo $(ARGS)

# Three pytest-xdist processes, each with its own node and 3-node cluster (tests/conftest.py):
# most of a test's time is spent waiting (tasks, node boots), so three beat two on 2 cores.
test: $(STAMP)
	$(BIN)/python -m pytest -n 3 --dist load $(ARGS)

# The tests that need no RabbitMQ node (no "broker" marker, tests/conftest.py), in two
# pytest-xdist processes: argument checks, error translation, the journal, the layout rule.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not broker" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

compare: $(STAMP)
	$(BIN)/mqlab compare $(ARGS)

# Resolve the newest versions pyproject.toml allows in a scratch venv and pin them.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# Exact versions mqlab is tested and measured with (make installs with -c constraints.txt)."; \
	  echo "# Refresh with: make lock"; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^mqlab'; } > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache *.egg-info
