# The two commands of the README. Both create ./.venv on first use and install into it.
#   make demo   - install what the demo needs and run it
#   make test   - install everything and run the whole test suite
#   make test-floor - the oldest supported releases (pyproject's floors) in ./.venv-floor: the contract
#                 table and the adapter tests (CI runs it after `make test`)
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
TEST_SET := tensorflow-cpu==2.21.0 keras==3.15.1 lightning==2.6.6 pytorch-lightning==2.6.6 \
	transformers==5.25.0 accelerate==1.16.0 jax==0.10.2 jaxlib==0.10.2
# The floors: exactly pyproject.toml's lower bounds (tests/test_versions.py checks they agree), and the
# JAX release of Keras 3.8's time. transformers 4.x needs USE_TF=0 beside Keras 3 (its own switch).
FLOOR_VENV ?= .venv-floor
# torch: the floor leg takes 2.4.1 (Lightning 2.4's release time), a CUDA build (about 3 GB, 1.5 min from the
# local mirror) that runs on the CPU; the CPU-only build on disk is 2.13.0 alone.
TORCH_FLOOR := torch==2.4.1
FLOOR_SET := tensorflow-cpu==2.18.0 keras==3.8.0 lightning==2.4.0 pytorch-lightning==2.4.0 \
	transformers==4.47.1 accelerate==1.0.1 jax==0.4.38 jaxlib==0.4.38
FLOOR_TESTS := tests/test_contract.py tests/test_adapter_parity.py tests/test_cross_framework.py \
	tests/test_distributed.py tests/test_versions.py $(wildcard tests/test_keras*.py) \
	$(wildcard tests/test_lightning*.py) $(wildcard tests/test_hf*.py) $(wildcard tests/test_seam_*.py) \
	$(wildcard tests/test_microbatch*.py) $(wildcard tests/test_trial_reporter*.py)

.PHONY: demo test test-floor lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q $(TEST_SET) -e ".[all,test]"
	touch $@ $(VENV)/.installed-demo

$(FLOOR_VENV)/.installed-floor: pyproject.toml Makefile
	$(PY) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/pip install -q $(TORCH_FLOOR)
	$(FLOOR_VENV)/bin/pip install -q $(FLOOR_SET) "pytest>=8" "pytest-xdist>=3.5" "hypothesis>=6" "optuna>=4.9" \
		-e ".[plot,keras,lightning,hf,demo]"
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/hpcallbacks demo $(ARGS)

test: $(VENV)/.installed-test
	HPCALLBACKS_LEG=newest $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

test-floor: $(FLOOR_VENV)/.installed-floor
	HPCALLBACKS_LEG=floor USE_TF=0 $(FLOOR_VENV)/bin/python -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder \
		$(FLOOR_TESTS) $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/pip install -q ruff && $(BIN)/ruff check .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

# the documentation (docs/): Sphinx, offline, warnings are errors, every cross-reference checked
DOCS_SET := sphinx==9.0.4 myst-parser==5.2.0 furo==2025.12.19 sphinx-copybutton==0.5.2
.PHONY: docs
$(VENV)/.installed-docs: $(VENV)/.installed-test
	$(BIN)/pip install -q $(DOCS_SET)
	touch $@

docs: $(VENV)/.installed-docs
	$(BIN)/sphinx-build -b html -E -n -W --keep-going -q docs docs/_build/html

clean:
	rm -rf $(VENV) $(FLOOR_VENV) build *.egg-info
