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

demo: setup
	$(PY) -m srlib eval --bicubic --data data/Set5 --data data/Set14

test: setup
	$(PY) -m pytest

clean:
	rm -rf runs results/*.png .pytest_cache
