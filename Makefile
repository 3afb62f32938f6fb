# The everyday commands. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck services bench clean

install: $(BIN)/spark-integrations

$(BIN)/spark-integrations: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@# mypy cannot see setuptools' editable finder: give it the package under its installed name.
	@mkdir -p .typecheck && ln -sfn "$(CURDIR)" .typecheck/spark_integrations
	@touch $@

# The main job on the embedded default: the sandbox, the gateway, a worker and beat; an OAuth
# connection; a sync of 10,000 records and an action destination under faults and a rate limit;
# a summary. It stops what it started.
run: install
	$(BIN)/spark-integrations demo

test: install
	@bash .ci/services
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=25

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
	rm -rf $(VENV) .typecheck build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
