"""A model directory's `cpu_reading` decides how `read` runs on CPU (fp32, bf16, int8)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.backbones import build_rmt, load_rmt, tiny_llama_config
from model.config import RMTConfig
from model.rmt import RecurrentMemoryTransformer

VOCAB = 300


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(cpu_reading: str = "fp32") -> RecurrentMemoryTransformer:
    config = tiny_llama_config(VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, initializer_range=0.2)
    model = build_rmt(config, num_mem_tokens=4, segment_size=16, seed=0).eval()
    model.config.cpu_reading = cpu_reading
    return model


def last_memory(model: RecurrentMemoryTransformer, length: int = 48, **kwargs) -> torch.Tensor:
    ids = torch.randint(4, VOCAB, (2, length), generator=torch.Generator().manual_seed(1))
    return list(model.read(ids, **kwargs))[-1]


def test_int8_reading_is_close_to_fp32_but_quantised() -> None:
    """After one segment (a random tiny model amplifies rounding over more: whether answers
    survive is what bench.read_throughput measures on a real model)."""
    reference, int8 = (last_memory(model, length=16) for model in (tiny(), tiny("int8")))
    assert not torch.equal(int8, reference)
    assert torch.cosine_similarity(int8.flatten(), reference.flatten(), dim=0) > 0.98


def test_bf16_reading_is_autocast_and_an_explicit_autocast_wins() -> None:
    model = tiny("bf16")
    assert torch.equal(last_memory(model), last_memory(tiny(), autocast_dtype=torch.bfloat16))
    model.config.cpu_reading = "int8"
    assert torch.equal(last_memory(model, autocast_dtype=torch.bfloat16), last_memory(tiny(), autocast_dtype=torch.bfloat16))


def test_the_int8_copy_follows_weight_updates() -> None:
    model = tiny("int8")
    before = last_memory(model)
    assert torch.equal(last_memory(model), before)  # made once, then reused
    with torch.no_grad():
        model.backbone.model.layers[0].mlp.up_proj.weight.mul_(2.0)
    assert not torch.equal(last_memory(model), before)


def test_the_setting_is_saved_and_checked(tmp_path: Path) -> None:
    tiny("int8").save_pretrained(tmp_path)
    assert load_rmt(tmp_path).config.cpu_reading == "int8"
    with pytest.raises(ValueError, match="cpu_reading"):
        RMTConfig(cpu_reading="fp8")
