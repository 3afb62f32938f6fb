# The everyday commands. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_LOG ?= $(VENV)/run-worker.log

.PHONY: install run test lint typecheck services bench clean

install: $(BIN)/spark-integrations

$(BIN)/spark-integrations: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# The main job on the embedded default: check every part, then a first task round trip
# through a real worker (started in the background and stopped afterwards).
run: install
	$(BIN)/spark-integrations doctor
	@$(BIN)/spark-integrations worker --concurrency 1 >$(RUN_LOG) 2>&1 & pid=$$!; \
	  $(BIN)/spark-integrations ping --timeout 60; rc=$$?; \
	  kill $$pid; wait $$pid 2>/dev/null; \
	  [ $$rc -eq 0 ] || tail -n 20 $(RUN_LOG); exit $$rc

test: install
	@bash .ci/services
	$(BIN)/python -m pytest

# Benchmarks against plain Celery and plain requests (about 20 minutes; --quick for a glance).
bench: install
	@bash .ci/services
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
