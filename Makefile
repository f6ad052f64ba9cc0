# Two entry points for a fresh machine: `make demo` (the whole workflow on synthetic data) and
# `make test` (the test suite). Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch pair these machines carry (a CUDA build that also runs on CPU); override on a GPU box.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install test demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The demo runs on CPU: one thread per job and no GPU limit, so jobs run side by side on every core
# (`evaluate` names every evaluate job of the workflow, one per target and backbone configuration).
DEMO_FLAGS := --cores all --configfile config/demo.yaml --set-threads train=1 evaluate=1 \
	--set-resources train:gpu=0 evaluate:gpu=0

# The workflow keeps the demo's feature cache (config/demo.yaml turns it on) with its other outputs.
demo: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake $(DEMO_FLAGS)
	@echo "Demo report: reports/demo/index.html"

clean:
	rm -rf results/demo reports/demo resources/demo logs/demo .snakemake
