# The developer's loop: `make run`, `make test`, `make lint`, `make bench`, `make docs`.
# The Makefile builds its own virtual environment (.venv) with whatever python3 is on
# PATH (3.11 or newer); set PY=/path/to/python3.x to choose another. `make run` installs
# what running needs; `make test` adds what the tests need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
OUT ?= $(CURDIR)/out
# mypy does not follow the import hook of an editable install, so it checks the package
# through a tree of links named as it is installed (chordflow/, chordflow/modules/, ...).
TYPECHECK := build/typecheck

.PHONY: run test lint bench docs clean

$(VENV)/bin/python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "chordflow needs Python 3.11 or newer; set PY=python3.11")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(TEST_STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/chordflow run examples/sales-report.yaml --var out="$(OUT)"

# Two test processes, each taking whole files (their servers are started once per file
# or per process); the slowest tests are listed at the end. PYTEST_ARGS adds options
# (PYTEST_ARGS='-n 0' runs in one process).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check app modules workers tasks tests bench
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/chordflow
	for f in app/*; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/chordflow/; done
	for d in modules tasks workers; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/chordflow/$$d; done
	cd $(TYPECHECK) && $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml -p chordflow

bench: $(TEST_STAMP)
	$(BIN)/python bench/embedded.py

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on a broken link.
docs: $(TEST_STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build out site .pytest_cache .mypy_cache .ruff_cache
