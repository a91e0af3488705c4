# Carrier: the two set-up commands are `make chat` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# 4 workers on 2 cores: most tests wait on subprocesses (carrier serve, fake servers,
# PostgreSQL, Chromium), not the CPU. A file stays on one worker (its module-scoped servers
# start once); tests/conftest.py hands the slowest files out first. `PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 4 --dist loadfile --no-loadscope-reorder

.PHONY: install install-dev chat test test-fast lint format typecheck bench examples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed  ## create .venv and install Carrier

install-dev: $(VENV)/.installed-dev  ## install Carrier with the test and lint tools

chat: install  ## talk to the built-in character (SQLite memory, no set-up)
	$(BIN)/carrier chat

test: install-dev  ## the whole suite, service-backed tests included
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install-dev  ## skip the slow and service-backed tests
	$(BIN)/pytest -m "not slow and not service and not postgres" $(PYTEST_ARGS)

lint: install-dev  ## ruff lint + format check, mypy
	$(BIN)/ruff check carrier_cli tests bench
	$(BIN)/ruff format --check carrier_cli tests bench
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff check --fix carrier_cli tests bench
	$(BIN)/ruff format carrier_cli tests bench

bench: install-dev  ## every benchmark in bench/, printing figures
	@for script in bench/*_bench.py; do \
		echo "== $$script"; $(BIN)/python $$script $(BENCH_ARGS) || exit 1; \
	done

examples: install  ## regenerate config.example.yaml and .env.example from the settings model
	$(BIN)/python -c "from carrier_cli.config_template import render_config_yaml as y, render_env_example as e; open('config.example.yaml','w').write(y()); open('.env.example','w').write(e())"

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
