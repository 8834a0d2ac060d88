# Self-documenting: `make` lists the targets. Each target first creates/updates .venv from pyproject.toml.
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
# stage commands (`python -m cacovid_lib.pipeline.stage ...`) must find the venv's python
export PATH := $(abspath $(BIN)):$(PATH)
STAMP := $(VENV)/.installed
# The CPU pins (cacovid_lib/cpu_pins.py) at params.yaml's runtime.threads: every command below runs under them, so
# the pipeline, the tests and a notebook opened in JupyterLab take the same code path on any x86-64 AVX2 CPU.
PINNED = env $(or $(shell $(BIN)/python -m cacovid_lib.cpu_pins --params params.yaml),$(error cannot read the CPU pins: see cacovid_lib/cpu_pins.py))

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: on a CPU machine this takes the local CPU build, not GBs of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP) ## create/update the virtual environment

repro: $(STAMP) ## regenerate every result (dvc repro on params.yaml)
	$(PINNED) $(BIN)/dvc repro

verify: $(STAMP) ## after make repro: compare every DVC output with the committed dvc.lock, stage by stage
	$(BIN)/python -m cacovid_lib.pipeline.verify

spread: $(STAMP) ## extra stage: the video LLM trained at 2 more seeds (dvc repro extras/dvc.yaml:vlm_seed_spread, ~25 min)
	$(PINNED) $(BIN)/dvc repro extras/dvc.yaml:vlm_seed_spread

test: $(STAMP) ## run the test suite (smoke profile of the real pipeline)
	$(PINNED) $(BIN)/python -m pytest -q

test-fast: $(STAMP) ## the tests not marked slow (the inner loop: under a minute)
	$(PINNED) $(BIN)/python -m pytest -q -m "not slow"

paper: $(STAMP) ## the paper's tables on GPUs (dvc repro paper/dvc.yaml; point paper/params.yaml at your folders: docs/gpu.md)
	env $(shell $(BIN)/python -m cacovid_lib.cpu_pins --params paper/params.yaml) $(BIN)/python -m cacovid_lib.paper.check --params paper/params.yaml
	env $(shell $(BIN)/python -m cacovid_lib.cpu_pins --params paper/params.yaml) $(BIN)/dvc repro paper/dvc.yaml

paper-dryrun: $(STAMP) ## the paper's pipeline on tiny random-weight models and fixture videos, on this CPU (build/paper-dryrun)
	$(PINNED) $(BIN)/python -m cacovid_lib.paper.dry_run --workdir build/paper-dryrun

lab: $(STAMP) ## open the notebooks in JupyterLab (a notebook run there writes to scratch/, never to a DVC output)
	JUPYTER_CONFIG_PATH=$(CURDIR)/.jupyter $(PINNED) $(BIN)/jupyter lab notebooks/

.PHONY: help venv repro verify spread test test-fast paper paper-dryrun lab
