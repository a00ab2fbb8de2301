# gateway: every target creates the virtual environment it needs (.venv) first.
# The distribution's optimized python3 when it is 3.11+, else python3 (.ci/pick-python).
PYTHON ?= $(shell .ci/pick-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo lint typecheck test check bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the gateway with its test tools

demo: $(STAMP) ## run the gateway in front of a demo app on http://127.0.0.1:8080
	$(BIN)/gateway demo

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP) ## mypy --strict on gateway/
	$(BIN)/mypy

test: $(STAMP) ## the whole test suite against the real PostgreSQL and Redis
	$(BIN)/pytest -q

check: lint typecheck test ## lint, types and the whole suite (what CI runs)

bench: $(STAMP) ## throughput of upstream, nginx and the gateway, as ratios
	$(BIN)/python bench/throughput.py

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
