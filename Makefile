# `make solve` and `make test` each create .venv when missing, install planner into it, and run.
# `make lint` is ruff and mypy (with the pydantic plugin); `make test` runs it, then the suite over every core;
# `make fuzz` runs the suite with fresh, and more, hostile and property-test examples.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: solve test fuzz lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-installed

solve: $(VENV)/.run-installed
	$(BIN)/planner solve scenarios/gpt3_30days.yaml

lint: $(VENV)/.test-installed
	$(BIN)/ruff check planner tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n auto --dist worksteal  # one worker per core (pytest-xdist)

# the suite with fresh property-test examples (the suite itself draws the same ones every run), and 300 hostile
# inputs per command instead of 12
fuzz: lint
	HYPOTHESIS_PROFILE=explore PLANNER_FUZZ_EXAMPLES=300 $(BIN)/python -m pytest -n auto --dist worksteal

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/accuracy.py
	$(BIN)/python benchmarks/perf_speed.py
	$(BIN)/python benchmarks/solver.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
