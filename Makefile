# The developer's loop: `make run`, `make test`, `make lint`, `make bench`.
# The Makefile builds its own virtual environment (.venv) with whatever python3 is on
# PATH (3.11 or newer); set PY=/path/to/python3.x to choose another.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= $(CURDIR)/out

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "chordflow needs Python 3.11 or newer; set PY=python3.11")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/chordflow run examples/sales-report.yaml --var out="$(OUT)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check app modules workers tasks tests bench
	$(BIN)/mypy app modules workers tasks

bench: $(STAMP)
	$(BIN)/python bench/embedded.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
