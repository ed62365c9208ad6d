# The two commands: `make demo` and `make test` (`make lint`: mypy, ruff and the import-linter
# layer contracts in pyproject.toml; CI runs it first). Each creates .venv if missing and installs what it
# needs. CONSTRAINTS pins torch to the local CPU wheel; a GPU user runs `make demo CONSTRAINTS=`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
PYTEST_ARGS ?= --durations=15
# A crash of the test process itself (a segfault in a native library, during the session or at
# interpreter exit) prints every thread's Python stack: pytest hands faulthandler back to Python
# after its session when this is set, and Ray's workers and the examples inherit it.
PYTEST := PYTHONFAULTHANDLER=1 $(PY) -m pytest
# Two test processes (pytest-xdist), each module whole in one of them (`--dist loadfile`: a
# module's Ray cluster fixture starts once, in one process): most tests wait on Ray (actors
# starting, timers, a burst), so two cores run two modules at once; the suite passes with both
# cores taken by a CPU hog, which is harder on it than a second module. `make test XDIST=` runs
# one process. The fault suite always runs alone (its namespaced nodes and timed partitions).
XDIST ?= -n 2 --dist loadfile

.PHONY: demo test test-fast test-slow install bench lint clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_C) -e '.[test]'
	@touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ainative demo

test: test-fast test-slow

test-fast: $(VENV)/.installed
	$(PYTEST) -m "not slow" $(XDIST) $(PYTEST_ARGS)

# The slow tier; pytest exits 5 when the tier is empty, which is not a failure.
# The fault suite (tests/faults) runs in its own pytest process: its Ray head and namespaced nodes
# must not become the shared driver's cluster for the modules that follow.
test-slow: $(VENV)/.installed
	$(PYTEST) -m "slow and not faults" $(XDIST) $(PYTEST_ARGS); rc=$$?; if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi
	$(PYTEST) -m faults tests/faults $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install -q $(PIP_C) -e '.[test,bench]'
	@touch $@

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run_all.py

lint: $(VENV)/.installed
	$(PY) -m pip install -q mypy ruff types-PyYAML types-requests 'import-linter>=2.1,<3'
	$(PY) -m mypy
	$(PY) -m ruff check src tests benchmarks examples
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
