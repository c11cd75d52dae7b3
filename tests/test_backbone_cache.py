"""The converted-backbone cache: one conversion per source file, a different file converted
anew, a damaged cache rebuilt, nothing half-written left behind. A tiny random Llama and a
word-level tokenizer stand in for SmolLM2's GGUF conversion."""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from model.backbone_cache import WEIGHTS, cache_dir, file_sha256, load_cached
from model.backbones import backbone_from_config, tiny_llama_config


class Converter:
    """Counts conversions; the model depends on the source file's bytes, like a real one."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, source: Path) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
        self.calls += 1
        torch.manual_seed(len(source.read_bytes()))
        config = tiny_llama_config(16, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
        words = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
        return backbone_from_config(config), PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="b")


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([[1, 2, 3, 4]])).logits


def test_converts_once_then_loads_the_cache(tmp_path: Path) -> None:
    source, convert = tmp_path / "model.gguf", Converter()
    source.write_bytes(b"weights v1")
    first, tokenizer, sha = load_cached("tiny", source, convert, home=tmp_path / "home")
    again, _, _ = load_cached("tiny", source, convert, home=tmp_path / "home")
    assert convert.calls == 1
    assert sha == file_sha256(source)
    assert torch.equal(logits(again), logits(first))
    assert tokenizer.eos_token == "b"
    assert [p.name for p in (tmp_path / "home" / "backbones").iterdir()] == [cache_dir("tiny", sha).name]  # no temporary folder left


def test_another_source_file_is_converted_anew(tmp_path: Path) -> None:
    source, convert = tmp_path / "model.gguf", Converter()
    source.write_bytes(b"weights v1")
    old = logits(load_cached("tiny", source, convert, home=tmp_path)[0])
    source.write_bytes(b"other weights")
    new, _, sha = load_cached("tiny", source, convert, home=tmp_path)
    assert convert.calls == 2
    assert not torch.equal(logits(new), old)
    assert (cache_dir("tiny", sha, tmp_path) / WEIGHTS).is_file()


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    source, convert = tmp_path / "model.gguf", Converter()
    source.write_bytes(b"weights v1")
    expected = logits(load_cached("tiny", source, convert, home=tmp_path)[0])
    weights = cache_dir("tiny", file_sha256(source), tmp_path) / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated copy, a full disk
    assert torch.equal(logits(load_cached("tiny", source, convert, home=tmp_path)[0]), expected)
    assert convert.calls == 2
