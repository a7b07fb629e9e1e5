# The README's commands. Each creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.srlib-installed

.PHONY: setup demo test notebooks bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

# The main job: the quick pipeline of all four notebooks, headless, into runs/<timestamp>/.
demo: setup
	bash scripts/run_pipeline.sh quick

# The whole test suite: lint, unit tests (one drives JupyterLab in Debian's Chromium,
# installed here when missing), then the notebooks through nbval.
test: setup
	$(PY) -m ruff check srlib tests benchmarks
	bash scripts/install_browser_test_deps.sh
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env

# Re-execute the committed notebooks in place (quick path), so their outputs match the code.
notebooks: setup
	bash scripts/run_pipeline.sh quick notebooks

bench: setup
	$(PY) benchmarks/bench.py --quick

lab: setup
	cd notebooks && ../$(PY) -m jupyter lab

clean:
	rm -rf runs .pytest_cache
