# Self-documenting: `make` lists the targets. Each target first creates/updates .venv from pyproject.toml.
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
# stage commands (`python -m cacovid_lib.pipeline.stage ...`) must find the venv's python
export PATH := $(abspath $(BIN)):$(PATH)
STAMP := $(VENV)/.installed

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
	$(BIN)/dvc repro

spread: $(STAMP) ## extra stage: the video LLM trained at 2 more seeds (dvc repro extras/dvc.yaml:vlm_seed_spread, ~25 min)
	$(BIN)/dvc repro extras/dvc.yaml:vlm_seed_spread

pretrain-vision: $(STAMP) ## extra stage: the vision tower pretrained task-agnostic (extras/dvc.yaml:pretrain_vision, ~6 min)
	$(BIN)/dvc repro extras/dvc.yaml:pretrain_vision

test: $(STAMP) ## run the test suite (smoke profile of the real pipeline)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) ## the tests not marked slow (the inner loop: under a minute)
	$(BIN)/python -m pytest -q -m "not slow"

lab: $(STAMP) ## open the notebooks in JupyterLab (a notebook run there writes to scratch/, never to a DVC output)
	$(BIN)/jupyter lab notebooks/

.PHONY: help venv repro spread pretrain-vision test test-fast lab
