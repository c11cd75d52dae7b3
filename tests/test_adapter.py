"""Adapter directories: memory + LoRA tensors only, applied on a named pretrained backbone.

A tiny random Llama stands in for SmolLM2 (registered as a backbone source for the test), so
save -> load -> identical logits runs in about a second.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import torch
from safetensors import safe_open
from transformers import LlamaConfig

from model.adapters import ADAPTER_MARK, LLAMA_PROJECTIONS, LoraSettings, add_lora, merge_lora
from model.backbones import BACKBONE_SOURCES, BackboneSource, backbone_from_config, build_pretrained_rmt, load_rmt, tiny_llama_config
from model.rmt import CONFIG_FILE, IGNORE_INDEX, WEIGHTS_FILE, RecurrentMemoryTransformer

pytest.importorskip("peft")

REPO = Path(__file__).resolve().parents[1]
VOCAB = 300
SHA = "ab" * 32
LORA = {"rank": 4, "alpha": 8.0}


def tiny_backbone() -> torch.nn.Module:
    torch.manual_seed(123)
    config = tiny_llama_config(VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, initializer_range=0.2)
    return backbone_from_config(config)


@pytest.fixture(autouse=True)
def tiny_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A pretrained backbone that is the same random tiny Llama on every load, with one thread."""
    monkeypatch.setitem(BACKBONE_SOURCES, "tiny-test", BackboneSource(lambda dtype: (tiny_backbone().to(dtype), None, SHA)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained_adapter() -> RecurrentMemoryTransformer:
    """An adapter model whose every trainable tensor is random: LoRA's B starts at zero, and a
    test on fresh adapters would pass whether or not they were saved and loaded."""
    model, _ = build_pretrained_rmt("tiny-test", LORA, num_mem_tokens=4, segment_size=16, seed=0, memory_update="gated")
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def answer_logits(model: RecurrentMemoryTransformer) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    context = torch.randint(4, VOCAB, (2, 40), generator=generator)
    query = torch.randint(4, VOCAB, (2, 6), generator=generator)
    labels = query.clone()
    labels[:, :3] = IGNORE_INDEX
    with torch.no_grad():
        return model(context, query, labels).logits


def test_only_memory_and_adapters_are_trainable() -> None:
    model = trained_adapter()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any(ADAPTER_MARK in name for name in trainable)
    assert {"cell.memory", "cell.write_scale", "cell.gate.weight"} <= set(trainable)
    assert all(ADAPTER_MARK in name or not name.startswith("cell.backbone.") for name in trainable)


def test_adapter_directory_round_trip(tmp_path: Path) -> None:
    model = trained_adapter()
    model.save_pretrained(tmp_path)

    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["backbone_source"] == {"name": "tiny-test", "sha256": SHA}
    assert config["lora"]["rank"] == LORA["rank"]
    with safe_open(str(tmp_path / WEIGHTS_FILE), "pt") as f:
        names = set(f.keys())
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert names == trainable  # nothing of the frozen backbone, nothing trained left out

    loaded = load_rmt(tmp_path)
    assert torch.equal(answer_logits(loaded), answer_logits(model))
    assert not torch.equal(answer_logits(loaded), answer_logits(RecurrentMemoryTransformer(model.config, tiny_backbone()).eval()))


def test_adapter_refuses_other_backbone_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained_adapter().save_pretrained(tmp_path)
    monkeypatch.setitem(BACKBONE_SOURCES, "tiny-test", BackboneSource(lambda dtype: (tiny_backbone(), None, "cd" * 32)))
    with pytest.raises(ValueError, match="sha256"):
        load_rmt(tmp_path)


def test_merged_adapters_compute_the_same_function() -> None:
    model = trained_adapter()
    before = answer_logits(model)
    merge_lora(model.backbone)
    assert not any(ADAPTER_MARK in name for name, _ in model.named_parameters())
    # fp32 sums in another order: logits of scale ~5 differ by ~1e-4 (seen with peft 0.21.2)
    assert torch.allclose(answer_logits(model), before, atol=1e-3)


def test_gpu_config_adapter_fits_16_mb() -> None:
    """The shipped artifact's size as configs/smollm2_gpu.json trains it, on SmolLM2's shapes
    (meta tensors: no weights are loaded): LoRA, then memory, write scale and gate, in fp32."""
    config = json.loads((REPO / "configs" / "smollm2_gpu.json").read_text())
    settings = LoraSettings.from_dict(config["pretrained"]["lora"])
    assert set(settings.targets) <= set(LLAMA_PROJECTIONS)
    width = 576
    shape = LlamaConfig(vocab_size=49152, hidden_size=width, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)
    with torch.device("meta"):
        backbone = backbone_from_config(shape)
        add_lora(backbone, settings)
    lora = sum(p.numel() for name, p in backbone.named_parameters() if ADAPTER_MARK in name)
    cell = config["num_mem_tokens"] * width + 1 + (width * width + width if config["memory_update"] == "gated" else 0)
    assert 0 < 4 * (lora + cell) <= 16 * 2**20
