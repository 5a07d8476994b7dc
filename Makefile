# redafit — set-up, tests, benchmarks.
PYTHON ?= python3
PIP    := $(PYTHON) -m pip
# The CPU build of PyTorch; installing it first means the package's torch>=2.1 requirement is already met and
# pip never downloads the multi-GB CUDA wheels. On a GPU machine: make setup TORCH_SPEC="torch" (or your CUDA build).
TORCH_SPEC ?= torch==2.13.0
SHARED ?= $(abspath ../shared/data)
MODEL_SRC ?= $(SHARED)/models

.PHONY: setup test bench lint clean

setup:
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[dev]"
	@if [ -d "$(MODEL_SRC)/ict-face" ]; then \
	  $(PYTHON) -m redafit models install ict --from "$(MODEL_SRC)"; \
	else \
	  $(PYTHON) -m redafit models install ict; \
	fi
	$(PYTHON) -m redafit -q models train-init --model ict --if-missing

test:
	$(PYTHON) -m pytest -q tests

bench:
	$(PYTHON) -m benchmarks.run

lint:
	$(PYTHON) -m ruff check redafit tests benchmarks

clean:
	rm -rf build dist *.egg-info .pytest_cache
