# `make run` and `make test` each create .venv when missing; nothing else is needed but Python 3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test demo default-model default-denoisers bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m afmwatch demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# every benchmark, each section written into BENCHMARKS.md (long: run it on a quiet machine);
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--only e2e,latency" or BENCH_ARGS=--quick
bench: $(STAMP)
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo
