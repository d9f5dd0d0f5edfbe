# Set-up, demo and tests. `make demo` and `make test` create the virtual environment when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.quark-installed
# Tests run this many at once (pytest-xdist); 0 runs them in one process.
JOBS   ?= 2

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip setuptools wheel
	@# Keep any torch already present (a GPU user's CUDA build); otherwise take a CPU build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 \
	  || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	@$(PY) -m pip install -q -e ".[test]"
	@# Code execution (eval, tools) runs in a sandbox: Docker when a daemon answers, else bubblewrap.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1; } \
	  || echo "note: install bubblewrap (apt-get install bubblewrap) for sandboxed code execution"
	@touch $(STAMP)
	@echo "installed: $$($(VENV)/bin/quark --version) in $(VENV)"

demo: install
	$(VENV)/bin/quark demo --force --home .quark-demo

test: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile

# ruff (the test extra); not part of `test`, so CI's `make test` does not depend on the linter.
lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .quark-demo .pytest_cache
