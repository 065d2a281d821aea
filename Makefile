# Developer entry points. `make test` sets up .venv on first use, then lints and tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is left unpinned for users in pyproject.toml. For the dev venv we install it first, and
# only when the venv cannot import one already: the default is the small CPU build; pass
# TORCH_SPEC=torch for the CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv test lint typecheck docs bench demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

lint: venv
	$(VENV)/bin/ruff check gammatune tests bench examples docs/hooks
	$(VENV)/bin/ruff format --check gammatune tests bench examples docs/hooks

typecheck: venv
	$(VENV)/bin/mypy gammatune

test: lint typecheck docs
	$(PY) -m pytest --doctest-modules gammatune tests

# The docs site, offline and --strict: a broken link, a missing page or snippet, or a reference
# page that cannot be generated from the code fails it. Output in site/.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict  # not --quiet: it hides the warnings --strict counts

bench: venv
	$(PY) bench/kernel.py
	$(PY) bench/workflow.py
	$(PY) bench/verdict.py --skip-verdicts

# The demo on the lean install (the package and its dependencies, no dev extras), in a venv of
# its own, as a user would run it: `make demo` on a fresh clone.
DEMO_VENV ?= .venv-demo
demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/gammatune run --config configs/demo.yaml

$(DEMO_VENV)/.installed: pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -c "import torch" 2>/dev/null \
		|| $(DEMO_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(DEMO_VENV)/bin/python -m pip install -q -e .
	touch $@

clean:
	rm -rf $(VENV) $(DEMO_VENV) runs site .pytest_cache .ruff_cache .mypy_cache
