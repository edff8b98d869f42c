# crystaloop: two commands set everything up on a fresh machine.
#   make demo   create .venv, install, run the demo on the shipped data
#   make test   create .venv, install, lint (ruff + mypy baseline), run the test suite
#   make bench  create .venv, install, run the benchmarks (current tables: benchmarks/RESULTS.md; dated log: RESULTS_LOG.md)
#   make bench-smoke  every benchmark's quick run once, nothing recorded; fails when one fails (CI runs it after make test)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
DEMO_DIR ?= runs/demo

.PHONY: demo test bench bench-smoke lint clean-venv browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/crystaloop demo --out $(DEMO_DIR)

test: $(STAMP) browser lint
	$(PY) -m pytest -q

# Headless Chromium for the Prefect UI test (Debian package `chromium`), installed when missing
# and this user may install packages; without it that one test skips (fails under CI=true).
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing the Debian package chromium for the Prefect UI test (~1 min)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "could not install chromium: the Prefect UI browser test will skip"; \
	fi

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

bench-smoke: $(STAMP)
	$(PY) -m benchmarks.run_all --smoke

# ruff, then mypy: fails only when the mypy error count exceeds .ci/mypy_baseline.txt
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) .ci/mypy_baseline.py

clean-venv:
	rm -rf $(VENV)
