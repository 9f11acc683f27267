# The two commands a fresh machine needs:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint clean

# Creates the virtual environment and installs the package with its test extra.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Builds a small model from generated data, annotates a folder of images with a local Ray,
# writes Parquet and prints a summary. No internet and no ../shared needed.
demo: $(STAMP)
	$(VENV)/bin/faceattr-ray demo --out demo-out

# Lint, then the whole suite (slow Ray tests included).
test: $(STAMP)
	$(VENV)/bin/ruff check faceattr_ray jobs bench tests
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(PY) -m pytest -q -rs --durations=15 tests

clean:
	rm -rf $(VENV) demo-out .pytest_cache
