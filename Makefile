# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,ui,pretrained

.PHONY: setup chromium demo test test-fast lint bench clean

setup: $(VENV)/.installed-$(EXTRAS)

$(VENV)/.installed-$(EXTRAS): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

# Browser tests drive Debian's chromium (never `playwright install`); CI runs as root on a fresh Debian machine.
chromium:
	command -v chromium || (apt-get update && apt-get install -y chromium)

demo: setup
	$(BIN)/python -m workbench demo

test: setup chromium
	$(BIN)/python -m ruff check workbench tests bench apps notebooks
	$(BIN)/python -m ruff format --check workbench tests bench apps notebooks
	$(BIN)/python -m mypy  # over workbench/, configured in pyproject.toml
	# Two workers, one thread each, on CI's 2 cores: 489 s instead of 875 s for the non-browser tests.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --ignore=tests/ui
	# Browser tests click a live page while a model trains on the same cores: like Playwright's
	# own `retries`, a failed browser test is run once more before it counts.
	$(BIN)/python -m pytest -q tests/ui || $(BIN)/python -m pytest -q tests/ui --last-failed

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check workbench tests bench apps notebooks

clean:
	rm -rf runs data/synthetic .pytest_cache
