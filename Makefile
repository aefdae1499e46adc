# CPU build of PyTorch first (a bare `torch` requirement would pull a multi-GB CUDA build);
# on a GPU machine use `make install TORCH="torch"` to take the CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: install train test test-all lint clean

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,io,parallel,cluster,export,search]"

train:
	$(BIN)/python -m hsi.train $(ARGS)

test:
	$(BIN)/python -m pytest -q

test-all:
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint:
	$(BIN)/ruff check hsi tests bench

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
