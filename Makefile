# The README's commands. Each creates .venv when missing and installs into it what it needs,
# at the tested versions of constraints.txt: `make demo` srlib with the notebooks extra
# (papermill, ipykernel), `make lab` the lab extra (JupyterLab, and the notebooks extra),
# `make test` the dev extra (pytest, ruff, nbval, the linters, Playwright, and the lab extra).
#
#   make demo PYTHON=python3.11          the venv's Python (python3 when older than 3.11 stops)
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
#                                        a CPU-only PyTorch (no CUDA libraries) in a new venv
PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
CONSTRAINTS := constraints.txt
# pyproject.toml's requires-python (tests/test_packaging.py keeps the two equal).
MIN_PYTHON  := 3.11
# An index to take torch and torchvision from, first, before everything else; empty: PyPI's
# (on Linux its torch is the CUDA build, 5.3 GB with its CUDA libraries).
TORCH_INDEX ?=
PIP_INSTALL  = $(PY) -m pip install --disable-pip-version-check -q --no-compile -c $(CONSTRAINTS)

.PHONY: setup demo test notebooks bench lab clean

# Everything, as `make test` needs it.
setup: $(VENV)/.srlib-dev

# A Python older than MIN_PYTHON stops here, in one line, before any venv is made.
$(PY):
	@$(PYTHON) -c 'import sys; v = sys.version_info[:3]; need = tuple(map(int, "$(MIN_PYTHON)".split("."))); sys.exit(v < need and "srlib needs Python >= $(MIN_PYTHON); $(PYTHON) is %d.%d.%d: set PYTHON=python$(MIN_PYTHON)" % v)'
	$(PYTHON) -m venv $(VENV)

# One stamp per extra ($(VENV)/.srlib-notebooks, -lab, -dev), so `make demo` then `make test`
# on the same venv adds the dev extra. dev includes lab, which includes notebooks, so each
# stamp also stands for the extras it includes: `make test` then `make demo` or `make lab`
# installs nothing. A stamp older than pyproject.toml or constraints.txt is redone.
# --no-compile: Python compiles only what it imports, when it first does, instead of every
# file of torch at install time (45 s of the demo's install here).
# With TORCH_INDEX, torch and torchvision come first from that index at the versions of
# constraints.txt (2.14.1 matches 2.14.1+cpu); the install after it finds them satisfied.
# On a venv that already holds PyPI's torch it changes nothing: start from a new venv.
STAMPS_dev = $(VENV)/.srlib-lab $(VENV)/.srlib-notebooks
STAMPS_lab = $(VENV)/.srlib-notebooks
$(VENV)/.srlib-%: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(if $(TORCH_INDEX),$(PIP_INSTALL) --index-url "$(TORCH_INDEX)" torch torchvision)
	$(PIP_INSTALL) -e ".[$*]"
	touch $@ $(STAMPS_$*)

# The main job: the quick pipeline of all four notebooks, headless, into runs/<timestamp>/
# (runs/latest points at the last one that finished).
demo: $(VENV)/.srlib-notebooks
	bash scripts/run_pipeline.sh quick

# The whole test suite: lint, unit tests (one drives JupyterLab in Debian's Chromium, which
# is installed here when missing and root; without root that test is skipped, with CI=true
# it fails), then the notebooks through nbval.
test: $(VENV)/.srlib-dev
	$(PY) -m ruff check srlib tests benchmarks notebooks scripts
	bash scripts/install_browser_test_deps.sh
	SRLIB_RUN_DIR=$$(mktemp -d) $(PY) -m pytest tests notebooks --nbval --nbval-current-env

# Re-execute the committed notebooks in place (quick path), so their outputs match the code.
notebooks: $(VENV)/.srlib-notebooks
	bash scripts/run_pipeline.sh quick notebooks

bench: $(VENV)/.srlib-notebooks
	$(PY) benchmarks/bench.py --quick

# JupyterLab on the notebooks: the lab extra only, not the test tool chain.
lab: $(VENV)/.srlib-lab
	cd notebooks && $(abspath $(PY)) -m jupyter lab

# Caches only: Python's, pytest's, ruff's, Jupyter's checkpoints and srlib's decoded training
# sets (<dataset root>/.srlib_cache, remade on the next run). Never the outputs of runs
# (runs/, results/) and never the venv; no target here deletes runs.
CACHE_ROOTS = $(wildcard srlib tests benchmarks notebooks scripts configs docs data)
clean:
	rm -rf .pytest_cache .ruff_cache .ipynb_checkpoints __pycache__
	$(if $(CACHE_ROOTS),find $(CACHE_ROOTS) -type d \( -name __pycache__ -o -name .ipynb_checkpoints -o -name .srlib_cache \) -prune -exec rm -rf {} +)
