# Two entry points: `make up` (install, then run the whole stack locally) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch for development and tests; GPU hosts install their own CUDA build (docs/operations.md).
TORCH_CPU ?= torch==2.13.0

.PHONY: install up test lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q "$(TORCH_CPU)" -e ".[dev,eval]"
	touch $@

install: $(VENV)/.installed

up: install
	$(VENV)/bin/replan up --preset tiny

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy
