# Every target bootstraps .venv from the project's own files, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test test-thorough parity bench lint clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) install --quiet -e '.[test]'
	touch $@

$(VENV)/.examples: $(VENV)/.base pyproject.toml
	$(PIP) install --quiet -e '.[examples]'
	touch $@

$(VENV)/.bench: $(VENV)/.test pyproject.toml
	$(PIP) install --quiet -e '.[bench,examples]'
	touch $@

demo: $(VENV)/.examples
	$(PY) examples/demo.py

test: $(VENV)/.test
	$(PY) -m ruff check tinynn parity tests examples benchmarks
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -p no:cacheprovider tests

test-thorough: $(VENV)/.test
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q tests

parity: $(VENV)/.test
	$(PY) -m parity

bench: $(VENV)/.bench
	$(PY) benchmarks/run.py

lint: $(VENV)/.test
	$(PY) -m ruff check tinynn parity tests examples benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
