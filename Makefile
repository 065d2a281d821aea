# Developer entry points. `make test` sets up .venv on first use, then lints and tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is left unpinned for users in pyproject.toml. For the dev venv we install it first, and
# only when the venv cannot import one already: the default is the small CPU build; pass
# TORCH_SPEC=torch for the CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv test lint typecheck bench demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

lint: venv
	$(VENV)/bin/ruff check gammatune tests bench examples
	$(VENV)/bin/ruff format --check gammatune tests bench examples

typecheck: venv
	$(VENV)/bin/mypy gammatune

test: lint typecheck
	$(PY) -m pytest --doctest-modules gammatune tests

bench: venv
	$(PY) bench/kernel.py
	$(PY) bench/workflow.py
	$(PY) bench/verdict.py --skip-verdicts

demo: venv
	$(VENV)/bin/gammatune run --config configs/demo.yaml

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
