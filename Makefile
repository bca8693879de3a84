# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m gateway

# Style, types (mypy over the packages and bench), and the import contracts between the packages (pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# -rs: every skipped test is listed with its reason (tests that need ../shared beside the checkout).
test: install lint
	$(PY) -m pytest -q -rs

bench: install
	$(PY) -m bench.relay
	$(PY) -m bench.webhooks
	$(PY) -m bench.export
	$(PY) -m bench.dashboard
	$(PY) -m bench.codec
	$(PY) -m bench.recovery

clean:
	rm -rf $(VENV) *.egg-info
