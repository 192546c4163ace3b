# The README's commands: `make demo`, `make test`, and for developers `make lint` and `make test-fast`.
# Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch that the test machines hold on local disk; a GPU workstation installs its own.
TORCH ?= torch==2.13.0
DEMO_PROMPT ?= a red ball on grass

.PHONY: setup demo test test-fast lint clean

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

# Minutes, not the whole suite's many: no real Blender, nothing marked slow.
test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not blender"

# ruff's lint rules, its formatting (checked, never applied here) and mypy; pyproject.toml holds their settings.
# All three run, so one pass shows every finding; any finding fails the target.
lint: setup
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) out .pytest_cache
