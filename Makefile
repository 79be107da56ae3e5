# `make run` and `make test` work from a clean clone: they create the virtual environment first.
# `make run` installs what the collector needs (the `collector` extra); `make test`, `lint` and `bench`
# add the `dev` extra (pytest, ruff, the instrumentation and deploy test tools).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COLLECTOR_STAMP := $(VENV)/.installed-collector
DEV_STAMP := $(VENV)/.installed-dev
ARGS ?=

.PHONY: run test lint bench clean

# The interpreter of the virtual environment, made with a Python the project supports (pyproject.toml).
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "tracehouse needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>/dev/null || echo "not found"). Use make PYTHON=python3.12 ..." >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(COLLECTOR_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[collector]'
	touch $@

# The dev extra includes everything the collector needs, so it satisfies `make run` too.
# tests/test_report.py opens the report in Debian's Chromium (driven by playwright, which cannot download a
# browser here): installed once, as root, if it is missing.
# Node test clients (tests/*/package-lock.json: the Vercel AI SDK conformance app, the ClickHouse JS client)
# are installed from their lock files with the machine's npm.
NODE_LOCKS := $(wildcard tests/*/package-lock.json)

$(DEV_STAMP): pyproject.toml tests/requirements-conformance.txt $(NODE_LOCKS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[collector,dev]' -r tests/requirements-conformance.txt
	@for lock in $(NODE_LOCKS); do \
		npm ci --prefix "$$(dirname $$lock)" --no-audit --no-fund --loglevel=error || exit 1; done
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	touch $@ $(COLLECTOR_STAMP)

run: $(COLLECTOR_STAMP)
	$(BIN)/tracehouse serve $(ARGS)

# Test files run in parallel, one worker per core (TEST_WORKERS=0 runs them in this process).
TEST_WORKERS ?= auto
test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(DEV_STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
