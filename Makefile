# One command to set up and run the main job, one to set up and run the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=
# pytest-xdist processes for make test (0: one process). 2 is what CI's 2 cores run: the end-to-end
# tests wait on servers and subprocesses, so two in parallel take ~8.5 min instead of ~13-15.
TEST_WORKERS ?= 2

.PHONY: setup run test test-fast lint format analysis clean constraints

# constraints.txt: the versions the suite passed with (make constraints rewrites it from the venv)
CONSTRAINTS ?= constraints.txt

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# CPU wheel where no NVIDIA GPU is present (a CUDA build otherwise comes from the range in pyproject)
	@if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install --quiet -c $(CONSTRAINTS) torch; fi
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup            ## the main job: a sweep with the default grid (override: make run ARGS="--preset batch-study")
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(PY) flows/sweep.py $(ARGS)

test: setup           ## the whole test suite
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(PY) -m pytest -q -n $(TEST_WORKERS) $(ARGS)

test-fast: setup      ## everything but the slow end-to-end tests
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(ARGS)

lint: setup          ## ruff (rules and formatting), mypy (ddrsa/), the import layers (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: setup        ## apply ruff's formatter and its safe fixes (then review the diff)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

analysis: setup
	$(PY) flows/analysis.py --output-dir parallel_experiments

constraints: setup   ## rewrite constraints.txt from the venv (after an upgrade that passes make test)
	@{ sed -n '1,4p' $(CONSTRAINTS); $(PY) -m pip freeze --exclude-editable | grep -v -E \
	   '^(#|-e |nvidia-(cu|cuda|nccl|nvjitlink|nvtx|cusparse|cufft|curand|cublas|cudnn|cusolver|cufile)|triton==)' \
	   | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/'; } > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
