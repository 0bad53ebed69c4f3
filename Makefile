# concord: the two everyday commands are `make run` (the hub and its demo) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
CONCORD = $(VENV)/bin/concord
# The pages' design system (govuk-frontend) and the browser tests' axe-core, from npm, pinned in
# connectors/pages/package-lock.json (git-ignored node_modules, as the Kafka jars are fetched).
PAGES_ASSETS = connectors/pages/node_modules

.PHONY: install kafka topics run demo test unit fuzz lint format bench manifests faults stop clean

install: $(VENV)/.installed $(PAGES_ASSETS)/.installed

$(PAGES_ASSETS)/.installed: connectors/pages/package.json connectors/pages/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the pages' assets: install Node.js and npm"; exit 1; }
	cd connectors/pages && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: install it or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

kafka: install
	$(CONCORD) kafka start

topics: kafka
	$(CONCORD) topics create

run: topics  ## the hub and its demo feed; stays running until Ctrl-C
	$(PY) -m services.ops.demo

demo: topics  ## the demo once through, then exit
	$(PY) -m services.ops.demo --once

test: kafka
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit tests/property tests/fuzz

# The fuzz suite's long run (the test suite runs it briefly): FUZZ_INPUTS inputs per format,
# from FUZZ_SEED (a new one each run unless given; a failure names it, to run it again).
FUZZ_INPUTS ?= 10000
ifndef FUZZ_SEED
FUZZ_SEED := $(shell date +%s)
endif

fuzz: install  ## mutated inputs for every parser and worker decoder; progress on stderr
	@echo "fuzz: $(FUZZ_INPUTS) inputs per format, seed $(FUZZ_SEED)"
	CONCORD_FUZZ_INPUTS=$(FUZZ_INPUTS) CONCORD_FUZZ_SEED=$(FUZZ_SEED) $(PY) -m pytest tests/fuzz -s -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: kafka  ## every benchmark, printing its figures (BENCH_ARGS=--quick for a smoke run)
	$(PY) -m bench.run $(BENCH_ARGS)

manifests: install  ## render and validate deploy/k8s, deploy/compose.yaml and the Dockerfile
	deploy/k8s/validate.sh

# The fault suite on its own three-broker cluster (started on 127.0.0.1:19720-19725 if needed):
# every scenario, or FAULTS=short for three of them once; FAULTS_ARGS for more (--help).
FAULTS ?= full
FAULTS_ARGS ?=

faults: install  ## faults injected mid-stream, a table of events and alerts lost, duplicated, recovery
	$(PY) -m bench.faults $(if $(filter short,$(FAULTS)),--short) $(FAULTS_ARGS)

stop:
	-$(CONCORD) kafka stop

clean: stop
	rm -rf $(VENV) .cache $(PAGES_ASSETS)
