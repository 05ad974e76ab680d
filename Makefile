# Two entry points from a fresh clone: `make sweep` (the main job) and `make test`.
# Both create .venv if absent and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch. On this project's machines it installs from local disk in seconds;
# a bare `torch` would resolve to a multi-GB CUDA build. Override on a GPU box, e.g.
#   make test TORCH_SPEC='torch==2.13.0 --index-url <your CUDA wheel index>'
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,cluster,slurm

.PHONY: sweep test lint bench clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

sweep: $(VENV)/.installed
	$(PY) -m sims.sweep --quick

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
