# Two entry points for people: `make run` (install, then serve the bundled document) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-test system-test-deps run test test-fast lint bench

$(PY):
	python3 -m venv $(VENV)

# torch first, pinned to the CPU build; otherwise sentence-transformers (the `build` extra) pulls a multi-GB CUDA
# build. `make run` builds the index, so it installs the `build` extra beside what serving needs.
# Stamp files make later runs skip the install until pyproject.toml or constraints.txt change.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[build]'
	touch $@

install-test: $(VENV)/.installed-test system-test-deps
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e '.[build,test,postgres]'
	touch $@

# Headless Chromium for the browser tests and wrk for the load benchmark, from Debian.
system-test-deps:
	@if ! command -v chromium >/dev/null || ! command -v wrk >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium wrk >/dev/null; \
	fi

run: install
	$(VENV)/bin/qa serve --host $(HOST) --port $(PORT)

# Everything: lint, types, then every test (the real model, servers and the browser included).
test: install-test lint
	$(VENV)/bin/python -m pytest -q -m ""

# The fast suite alone (fake embedder, no servers): plain `pytest`.
test-fast: install-test
	$(VENV)/bin/python -m pytest -q

lint: install-test
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src
	$(VENV)/bin/mypy src

bench: install-test
	$(VENV)/bin/python bench/run.py --json artifacts/bench.json
