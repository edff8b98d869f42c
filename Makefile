# crystaloop: two commands set everything up on a fresh machine.
#   make demo   create .venv, install, run the demo on the shipped data
#   make test   create .venv, install, run the test suite
#   make bench  create .venv, install, run the benchmarks (figures go to benchmarks/RESULTS.md)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
DEMO_DIR ?= runs/demo

.PHONY: demo test bench lint clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/crystaloop demo --out $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

lint: $(STAMP)
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
