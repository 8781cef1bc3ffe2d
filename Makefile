# Two commands for a fresh machine (see README):  make demo   and   make test
# Each creates ./.venv and installs what it needs. torch is pinned here (the CPU build); the
# package metadata keeps a range.
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
TORCH_PIN := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: demo simulate test test-slow bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[trl,dev]' $(TORCH_PIN)
	touch $@

install: $(VENV)/.installed

## the main job: GRPO on the built-in task, static G vs SAGC, report in ./sagc-report (see README)
demo: install
	$(BIN)/sagc demo --out sagc-report

## the simulator's side-by-side comparison on a shipped scenario
simulate: install
	$(BIN)/sagc simulate heavy-tail --plot sagc-report/simulate.png --json sagc-report/simulate.json

## the tests (CPU only; slow ones are deselected, run them with `make test-slow`)
test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python bench/bench_controller.py
	$(BIN)/python bench/bench_simulate.py
	$(BIN)/python bench/bench_sim.py
	$(BIN)/python bench/bench_trl_overhead.py

clean:
	rm -rf $(VENV) sagc-report bench/results
