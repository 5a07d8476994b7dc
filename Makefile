# redafit — set-up, tests, benchmarks.
PYTHON ?= python3
PIP    := $(PYTHON) -m pip
# The CPU build of PyTorch; installing it first means the package's torch>=2.1 requirement is already met and
# pip never downloads the multi-GB CUDA wheels. PyPI's Linux torch wheels are CUDA builds, so when PyTorch's CPU
# index answers it is added (its 2.13.0+cpu ranks above PyPI's 2.13.0); a machine with a local wheel house and no
# route to it (this project's CI) skips it rather than wait on pip's retries.
# On a GPU machine: make setup TORCH_SPEC="torch" TORCH_INDEX= (or your CUDA build).
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
SHARED ?= $(abspath ../shared/data)
MODEL_SRC ?= $(SHARED)/models

.PHONY: setup test bench lint clean

setup:
	@index=""; \
	if [ -n "$(TORCH_INDEX)" ] && $(PYTHON) -c "import socket, sys, urllib.parse as u; \
	  h = u.urlsplit(sys.argv[1]).hostname; socket.create_connection((h, 443), 3).close()" "$(TORCH_INDEX)" \
	  2>/dev/null; then index="--extra-index-url $(TORCH_INDEX)"; fi; \
	echo "$(PIP) install --quiet $$index \"$(TORCH_SPEC)\""; \
	$(PIP) install --quiet $$index "$(TORCH_SPEC)"
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
