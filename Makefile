# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch that the test machines hold on local disk; a GPU workstation installs its own.
TORCH ?= torch==2.13.0
DEMO_PROMPT ?= a red ball on grass

.PHONY: setup demo test clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

setup: $(VENV)/.ready

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py --prompt "$(DEMO_PROMPT)"

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
