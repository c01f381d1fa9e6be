# The two commands of the README. Both create ./.venv on first use and install into it.
#   make demo   - install what the demo needs and run it
#   make test   - install everything and run the whole test suite
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export MPLBACKEND ?= Agg
# torch is pinned to the CPU build that pip finds locally; an unpinned torch pulls a CUDA build.
TORCH   ?= torch==2.13.0
# test files run in parallel, one process per core (each file in one process: imports shared)
WORKERS ?= 2
TEST_SET := tensorflow-cpu==2.21.0 keras==3.15.1 lightning==2.6.6 pytorch-lightning==2.6.6

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q $(TEST_SET) jax==0.10.2 jaxlib==0.10.2 -e ".[all,test]"
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(BIN)/hpcallbacks demo $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/pip install -q ruff && $(BIN)/ruff check .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
