# The README's commands. Each creates .venv when missing and installs into it what it needs,
# at the tested versions of constraints.txt: `make demo` srlib with the notebooks extra
# (papermill, ipykernel), `make test` (and lab) the dev extra (pytest, ruff, nbval, the
# linters, JupyterLab, Playwright) on top.
PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
CONSTRAINTS := constraints.txt

.PHONY: setup demo test notebooks bench lab clean

# Everything, as `make test` needs it.
setup: $(VENV)/.srlib-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per extra ($(VENV)/.srlib-notebooks, $(VENV)/.srlib-dev), so `make demo` then
# `make test` on the same venv adds the dev extra; the dev extra includes the notebooks one,
# so `make test` then `make demo` installs nothing. A stamp older than pyproject.toml or
# constraints.txt is redone. --no-compile: Python compiles only what it imports, when it first
# does, instead of every file of torch at install time (45 s of the demo's install here).
$(VENV)/.srlib-%: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q --no-compile -c $(CONSTRAINTS) -e ".[$*]"
	touch $@ $(if $(filter dev,$*),$(VENV)/.srlib-notebooks)

# The main job: the quick pipeline of all four notebooks, headless, into runs/<timestamp>/.
demo: $(VENV)/.srlib-notebooks
	bash scripts/run_pipeline.sh quick

# The whole test suite: lint, unit tests (one drives JupyterLab in Debian's Chromium, which
# is installed here when missing and root; without root that test is skipped, with CI=true
# it fails), then the notebooks through nbval.
test: $(VENV)/.srlib-dev
	$(PY) -m ruff check srlib tests benchmarks
	bash scripts/install_browser_test_deps.sh
	SRLIB_RUN_DIR=$$(mktemp -d) $(PY) -m pytest tests notebooks --nbval --nbval-current-env

# Re-execute the committed notebooks in place (quick path), so their outputs match the code.
notebooks: $(VENV)/.srlib-notebooks
	bash scripts/run_pipeline.sh quick notebooks

bench: $(VENV)/.srlib-notebooks
	$(PY) benchmarks/bench.py --quick

lab: $(VENV)/.srlib-dev
	cd notebooks && ../$(PY) -m jupyter lab

clean:
	rm -rf runs .pytest_cache
