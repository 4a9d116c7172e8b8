# Two entry points for a fresh machine with Python 3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint types pytest bench readme mutants clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks examples tools
	$(PY) -m ruff format --check src tests benchmarks examples tools

# Each platform's branches are type-checked (Windows and macOS run nothing here: docs/design.md).
types: $(VENV)/.installed
	$(PY) -m mypy
	$(PY) -m mypy --platform win32
	$(PY) -m mypy --platform darwin

pytest: $(VENV)/.installed
	$(PY) -m pytest

test: lint types pytest

# Mutation testing (not part of `make test`: it takes a while). Arguments go through
# MUTANTS_ARGS, e.g. make mutants MUTANTS_ARGS="-j 2" or MUTANTS_ARGS="torn-if-unparsable".
mutants: $(VENV)/.installed
	$(PY) tools/mutants.py $(MUTANTS_ARGS)

# The peers run in their own venvs: 26.1 shares our import name, the others are not our deps.
PEERS := benchmarks/.peers

$(PEERS)/v26/.installed:
	$(PYTHON) -m venv $(PEERS)/v26
	$(PEERS)/v26/bin/python -m pip install --quiet 'persistedstate==26.1'
	touch $@

$(PEERS)/others/.installed:
	$(PYTHON) -m venv $(PEERS)/others
	$(PEERS)/others/bin/python -m pip install --quiet diskcache sqlitedict lmdbm matplotlib
	touch $@

# `make bench` runs every row (6 to 15 minutes); `make bench ROWS=import,memory` runs some rows
# only (changes, fsync, files, import, memory, read) and keeps the other rows' figures. Both
# then write README.md's benchmark figures from benchmarks/results/results.json.
ROWS ?=
bench: $(VENV)/.installed $(PEERS)/v26/.installed $(PEERS)/others/.installed
	$(PY) benchmarks/run.py $(if $(ROWS),--rows $(ROWS))
	$(PY) benchmarks/readme.py

readme: $(VENV)/.installed  # README.md's benchmark figures from the committed results.json
	$(PY) benchmarks/readme.py

clean:
	rm -rf $(VENV) .venv-* $(PEERS) benchmarks/.scratch build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
