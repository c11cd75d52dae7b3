"""The Recurrent Memory Transformer on tiny random backbones (Llama-style and GPT-2).

The weights are initialised with std 0.2 rather than 0.02: at 0.02 a tiny model's greedy
output just repeats the last prompt token, whatever the memory or the positions say.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor
from transformers import GPT2Config

from model.backbones import build_rmt, load_rmt, tiny_llama_config
from model.rmt import CONFIG_FILE, IGNORE_INDEX, WEIGHTS_FILE, Probe, RecurrentMemoryTransformer, closes_loop

VOCAB = 300
SEGMENT = 16
MEM = 4
BACKBONES = ["llama", "gpt2"]


def make_rmt(kind: str, bptt_depth: int | None = None, seed: int = 0, memory_update: str = "replace", token_shift: int = 0) -> RecurrentMemoryTransformer:
    """A tiny RMT (2 layers, hidden 64, S=16, M=4) in eval mode."""
    if kind == "llama":
        config = tiny_llama_config(
            VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, initializer_range=0.2
        )
    else:
        config = GPT2Config(
            vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256, bos_token_id=2, eos_token_id=3,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2,
        )
    return build_rmt(config, num_mem_tokens=MEM, segment_size=SEGMENT, bptt_depth=bptt_depth, seed=seed, memory_update=memory_update, token_shift=token_shift).eval()


def tokens(*shape: int, seed: int = 1) -> Tensor:
    return torch.randint(4, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def question(batch: int, length: int = 8, answer: int = 3, seed: int = 2) -> tuple[Tensor, Tensor]:
    """Query ids and labels whose last `answer` tokens are the answer."""
    query = tokens(batch, length, seed=seed)
    labels = query.clone()
    labels[:, : length - answer] = IGNORE_INDEX
    return query, labels


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(params=BACKBONES)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


# ----------------------------------------------------------------- memory and BPTT


def step_embedding_grads(model: RecurrentMemoryTransformer, context: Tensor, bptt_depth: int | None) -> list[float]:
    """Backpropagate the answer loss; return |grad| summed over each step's token embeddings
    (context segments in order, then the question). A step run without grad counts as 0."""
    embedded: list[Tensor] = []

    def keep(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
        if output.requires_grad:
            output.retain_grad()
        embedded.append(output)

    handle = model.backbone.get_input_embeddings().register_forward_hook(keep)
    try:
        query, labels = question(context.shape[0])
        model(context, query, labels, bptt_depth=bptt_depth).loss.backward()
    finally:
        handle.remove()
    return [0.0 if e.grad is None else e.grad.abs().sum().item() for e in embedded]


# 3 context segments + the answering step = 4 recurrent steps.
@pytest.mark.parametrize(
    "depth, segments_with_grad",
    [(None, {0, 1, 2}), (4, {0, 1, 2}), (3, {1, 2}), (2, {2}), (1, set())],
)
def test_gradient_reaches_exactly_the_segments_within_bptt_depth(kind: str, depth: int | None, segments_with_grad: set[int]) -> None:
    model = make_rmt(kind)
    grads = step_embedding_grads(model, tokens(2, 3 * SEGMENT), depth)
    assert len(grads) == 4
    assert grads[3] > 0  # the question itself
    assert {i for i in range(3) if grads[i] > 0} == segments_with_grad
    assert all(grads[i] == 0.0 for i in range(3) if i not in segments_with_grad)
    initial_memory_grad = model.cell.memory.grad
    reaches_start = 0 in segments_with_grad
    assert (initial_memory_grad is not None and bool(initial_memory_grad.abs().sum() > 0)) == reaches_start


@pytest.mark.parametrize("depth", [None, 1])
def test_without_context_the_answer_trains_the_initial_memory(depth: int | None) -> None:
    """The learned memory is then an input of the answering step itself, inside any depth."""
    model = make_rmt("llama")
    query, labels = question(2)
    model(tokens(2, 0), query, labels, bptt_depth=depth).loss.backward()
    assert model.cell.memory.grad is not None and bool(model.cell.memory.grad.abs().sum() > 0)


def test_bptt_depth_defaults_to_the_config() -> None:
    truncated = step_embedding_grads(make_rmt("llama", bptt_depth=2), tokens(1, 3 * SEGMENT), None)
    full = step_embedding_grads(make_rmt("llama", bptt_depth=2), tokens(1, 3 * SEGMENT), 4)
    assert truncated[0] == 0.0 and truncated[2] > 0
    assert full[0] > 0


def test_full_depth_equals_no_truncation(kind: str) -> None:
    context = tokens(2, 3 * SEGMENT)
    query, labels = question(2)
    grads = []
    for depth in (None, 4):
        model = make_rmt(kind)
        model(context, query, labels, bptt_depth=depth).loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("depth", [None, 2])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(kind: str, depth: int | None) -> None:
    context = tokens(2, 3 * SEGMENT)
    query, labels = question(2)
    results = []
    for checkpointing in (False, True):
        model = make_rmt(kind)
        loss = model(context, query, labels, bptt_depth=depth, gradient_checkpointing=checkpointing).loss
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (loss_plain, grads_plain), (loss_ckpt, grads_ckpt) = results
    torch.testing.assert_close(loss_ckpt, loss_plain)
    assert grads_plain and grads_ckpt.keys() == grads_plain.keys()
    for name in grads_plain:
        torch.testing.assert_close(grads_ckpt[name], grads_plain[name], msg=name)


# ----------------------------------------------------------------- batching and reading


def test_padded_batch_matches_each_document_alone(kind: str) -> None:
    model = make_rmt(kind)
    lengths = [40, 17, 33]
    query_lengths = [7, 5, 9]
    width, query_width = max(lengths), max(query_lengths)
    context = torch.zeros(len(lengths), width, dtype=torch.long)
    context_mask = torch.zeros_like(context)
    query = torch.zeros(len(lengths), query_width, dtype=torch.long)
    query_mask = torch.zeros_like(query)
    labels = torch.full_like(query, IGNORE_INDEX)
    docs, questions = [], []
    for i, (n, q) in enumerate(zip(lengths, query_lengths)):
        doc, ask = tokens(n, seed=10 + i), tokens(q, seed=20 + i)
        context[i, :n], context_mask[i, :n] = doc, 1
        query[i, :q], query_mask[i, :q] = ask, 1
        labels[i, q - 2 : q] = ask[-2:]
        docs.append(doc)
        questions.append(ask)

    batch_memories = list(model.read(context, context_mask))
    assert len(batch_memories) == 3
    for i, doc in enumerate(docs):
        alone = list(model.read(doc))
        for step, batch_memory in enumerate(batch_memories):
            expected = alone[min(step, len(alone) - 1)][0]  # a finished document keeps its memory
            torch.testing.assert_close(batch_memory[i], expected, rtol=0, atol=1e-5)

    batch = model(context, query, labels, context_mask=context_mask, query_mask=query_mask)
    rows = 0
    weighted_loss = 0.0
    for i, (doc, ask) in enumerate(zip(docs, questions)):
        ask_labels = torch.full_like(ask, IGNORE_INDEX)
        ask_labels[-2:] = ask[-2:]
        alone = model(doc[None], ask[None], ask_labels[None])
        count = alone.logits.shape[0]
        torch.testing.assert_close(batch.logits[rows : rows + count], alone.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batch.memory[i], alone.memory[0], rtol=0, atol=1e-5)
        assert bool(batch.answer_correct[i]) == bool(alone.answer_correct[0])
        weighted_loss += alone.loss.item() * count
        rows += count
    assert rows == batch.logits.shape[0]
    assert batch.loss.item() == pytest.approx(weighted_loss / rows, abs=1e-5)


def test_read_resumes_from_a_memory(kind: str) -> None:
    model = make_rmt(kind)
    first, second = tokens(1, 2 * SEGMENT, seed=3), tokens(1, 2 * SEGMENT + 5, seed=4)
    whole = list(model.read(torch.cat([first, second], dim=1)))
    start = list(model.read(first))
    resumed = list(model.read(second, memory=start[-1][0]))  # an (M, d) memory is accepted too
    assert len(whole) == len(start) + len(resumed) == 5
    for got, expected in zip(start + resumed, whole):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_read_leaves_grad_mode_and_autocast_of_the_caller_alone() -> None:
    model = make_rmt("llama")
    reader = model.read(tokens(1, 2 * SEGMENT), autocast_dtype=torch.bfloat16)
    memory = next(reader)
    assert memory.dtype == torch.float32 and not memory.requires_grad
    assert torch.is_grad_enabled()
    assert not torch.is_autocast_enabled("cpu")
    reader.close()


# ----------------------------------------------------------------- persistence


def test_save_and_load_round_trip_is_exact(kind: str, tmp_path) -> None:
    model = make_rmt(kind)
    with torch.no_grad():  # weights that a fresh initialisation cannot reproduce
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["rmt"] == {"num_mem_tokens": MEM, "segment_size": SEGMENT, "bptt_depth": None, "memory_update": "replace", "token_shift": 0}
    with safe_open(str(tmp_path / WEIGHTS_FILE), framework="pt") as weights:
        stored = set(weights.keys())
    embedding = model.backbone.get_input_embeddings().weight
    tied_names = {name for name, p in model.named_parameters(remove_duplicate=False) if p is embedding}
    assert len(tied_names) == 2 and len(tied_names & stored) == 1  # the tied matrix is stored once

    loaded = load_rmt(tmp_path)
    assert loaded.backbone.get_output_embeddings().weight is loaded.backbone.get_input_embeddings().weight
    context, (query, labels) = tokens(2, 40), question(2)
    for got, expected in zip(loaded.read(context), model.read(context)):
        assert torch.equal(got, expected)
    assert torch.equal(loaded(context, query, labels).logits, model(context, query, labels).logits)


def test_widened_memory_keeps_the_trained_vectors_and_round_trips(tmp_path) -> None:
    model = make_rmt("llama", memory_update="gated")
    trained = model.cell.memory.detach().clone()
    model.widen_memory(2 * MEM)

    grown = model.cell.memory.detach()
    assert grown.shape == (2 * MEM, trained.shape[1]) and model.config.num_mem_tokens == 2 * MEM
    assert torch.equal(grown[:MEM], trained)
    copies = grown[MEM:] - trained
    assert 0 < copies.abs().max() < 0.1 * trained.abs().max()  # copies, parted by a little noise
    assert [m.shape for m in model.read(tokens(1, 3 * SEGMENT))] == [(1, 2 * MEM, trained.shape[1])] * 3
    assert any(p is model.cell.memory for p in model.parameters())  # trained, not a stale tensor

    model.save_pretrained(tmp_path)
    loaded = load_rmt(tmp_path)
    assert loaded.config.num_mem_tokens == 2 * MEM and torch.equal(loaded.cell.memory, model.cell.memory)
    with pytest.raises(ValueError, match="only grow"):
        model.widen_memory(MEM)


def test_bfloat16_save_equals_a_bfloat16_copy(tmp_path) -> None:
    model = make_rmt("llama")
    model.save_pretrained(tmp_path, dtype=torch.bfloat16)
    with safe_open(str(tmp_path / WEIGHTS_FILE), framework="pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.bfloat16}
    loaded = load_rmt(tmp_path, dtype=torch.bfloat16)
    reference = copy.deepcopy(model).to(torch.bfloat16)
    context = tokens(1, 40)
    for got, expected in zip(loaded.read(context), reference.read(context)):
        assert got.dtype == torch.bfloat16 and torch.equal(got, expected)


# ----------------------------------------------------------------- gated memory and probes


def test_a_closed_gate_keeps_the_memory_and_an_open_one_replaces_it() -> None:
    gated, plain = make_rmt("llama", memory_update="gated"), make_rmt("llama")
    context = tokens(2, 2 * SEGMENT)
    with torch.no_grad():
        gated.cell.gate.bias.fill_(-40.0)
        kept = list(gated.read(context))[-1]
        gated.cell.gate.bias.fill_(40.0)
        replaced = list(gated.read(context))[-1]
    torch.testing.assert_close(kept, gated.initial_memory(2), rtol=0, atol=1e-6)
    torch.testing.assert_close(replaced, list(plain.read(context))[-1], rtol=0, atol=1e-5)  # same seed: same backbone
    assert not torch.allclose(kept, replaced, atol=1e-2)


def test_keep_weight_charges_each_change_of_the_memory() -> None:
    model = make_rmt("llama", memory_update="gated")
    context, (query, labels) = tokens(2, 3 * SEGMENT), question(2)
    with torch.no_grad():
        model.cell.gate.bias.fill_(-40.0)  # a closed gate: the memory never changes, nothing to charge
        assert torch.equal(model(context, query, labels, keep_weight=5.0).loss, model(context, query, labels).loss)
        model.cell.gate.bias.fill_(0.0)
    plain = model(context, query, labels).loss
    kept = model(context, query, labels, keep_weight=5.0).loss
    assert kept > plain
    kept.backward()
    assert model.cell.gate.bias.grad.sum() > 0  # descending closes the gate


def test_the_gate_starts_mostly_closed_and_learns() -> None:
    model = make_rmt("llama", memory_update="gated")
    assert torch.all(torch.sigmoid(model.cell.gate.bias) < 0.5) and not model.cell.gate.weight.any()
    query, labels = question(2)
    model(tokens(2, 2 * SEGMENT), query, labels).loss.backward()
    assert model.cell.gate.weight.grad.abs().sum() > 0 and model.cell.gate.bias.grad.abs().sum() > 0


def test_token_shift_mixes_the_k_tokens_before_each_one_within_its_segment() -> None:
    plain, shifted = make_rmt("llama"), make_rmt("llama", token_shift=3)
    ids = tokens(2, SEGMENT)
    raw = plain.cell.embed(ids)
    with torch.no_grad():
        shifted.cell.shift.zero_()
        torch.testing.assert_close(shifted.cell.embed(ids), raw, rtol=0, atol=0)
        shifted.cell.shift[2] = 1.0  # mix in the token 3 back
    mixed = shifted.cell.embed(ids)
    torch.testing.assert_close(mixed[:, 3:], raw[:, 3:] + raw[:, :-3], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed[:, :3], raw[:, :3], rtol=0, atol=0)  # nothing before a segment's start


def test_token_shift_starts_mixing_so_name_matching_has_a_gradient() -> None:
    """From zero, the shift and the query/key weights that would use it wait for each other."""
    model = make_rmt("llama", token_shift=3)
    assert bool((model.cell.shift > 0).all())
    query, labels = question(2)
    model(tokens(2, SEGMENT), query, labels).loss.backward()
    assert model.cell.shift.grad.abs().sum() > 0


def probe_after(segments: int, rows: list[int], seed: int = 7) -> Probe:
    query, labels = question(len(rows), seed=seed)
    return Probe(segments, torch.tensor(rows), query, labels)


def test_a_probe_answers_from_the_memory_after_its_segment(kind: str) -> None:
    """The same teacher-forced logits as a model that read only that many segments."""
    model = make_rmt(kind)
    context = tokens(2, 3 * SEGMENT)
    query, labels = question(2)
    probe = probe_after(1, [1, 0, 1])
    with torch.no_grad():
        out = model(context, query, labels, probes=[probe])
        alone = model(context[probe.rows, :SEGMENT], probe.query_ids, probe.labels)
    assert out.probe_correct.shape == (3,)
    assert torch.equal(out.probe_correct, alone.answer_correct)
    with torch.no_grad():  # the probe's answer tokens join the loss
        plain = model(context, query, labels)
    assert not torch.allclose(out.loss, plain.loss)


def test_a_probe_sends_gradient_only_to_the_segments_before_it(kind: str) -> None:
    model = make_rmt(kind)
    embedded: list[Tensor] = []

    def keep(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
        output.retain_grad()
        embedded.append(output)

    query, labels = question(2)
    labels[:] = IGNORE_INDEX  # no final answer: the probe holds the whole loss
    handle = model.backbone.get_input_embeddings().register_forward_hook(keep)
    try:
        model(tokens(2, 3 * SEGMENT), query, labels, probes=[probe_after(2, [0, 1])]).loss.backward()
    finally:
        handle.remove()
    # embedding calls in order: segment 0, segment 1, the probe's query, segment 2, the final query
    assert len(embedded) == 5
    segment_grads = [0.0 if e.grad is None else e.grad.abs().sum().item() for e in (embedded[0], embedded[1], embedded[3])]
    assert segment_grads[0] > 0 and segment_grads[1] > 0 and segment_grads[2] == 0.0


def test_probes_after_steps_outside_the_bptt_depth_are_skipped_in_training() -> None:
    model = make_rmt("llama", bptt_depth=2)  # only the last segment and the answer get gradients
    query, labels = question(2)
    out = model(tokens(2, 3 * SEGMENT), query, labels, probes=[probe_after(1, [0, 1]), probe_after(3, [0, 1], seed=8)])
    assert out.probe_correct.shape == (2,)  # the probe after segment 1 ran without gradient: skipped
    with torch.no_grad():
        assert model(tokens(2, 3 * SEGMENT), query, labels, probes=[probe_after(1, [0, 1])]).probe_correct.shape == (2,)


def test_a_probe_beyond_the_context_is_an_error() -> None:
    query, labels = question(2)
    with pytest.raises(ValueError, match="probe after 4 segments"):
        make_rmt("llama")(tokens(2, 3 * SEGMENT), query, labels, probes=[probe_after(4, [0, 1])])


# ----------------------------------------------------------------- answering


def greedy_without_cache(model: RecurrentMemoryTransformer, memory: Tensor, prompt: list[int], steps: int) -> list[int]:
    """Recompute `[memory | prompt | generated]` from scratch for every new token."""
    head = model.backbone.get_output_embeddings()
    sequence, generated = list(prompt), []
    with torch.no_grad():
        for _ in range(steps):
            hidden, _ = model.cell(torch.tensor([sequence]), None, memory[None], write=False)
            token = int(head(hidden[0, -1]).argmax())
            generated.append(token)
            sequence.append(token)
    return generated


@pytest.fixture(params=[0, 3], ids=["no-shift", "shift"])
def answering(kind: str, request: pytest.FixtureRequest) -> tuple[RecurrentMemoryTransformer, Tensor]:
    model = make_rmt(kind, token_shift=request.param)
    if request.param:
        with torch.no_grad():  # a trained-looking shift, so that cached decoding must carry it
            model.cell.shift.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    return model, list(model.read(tokens(1, 40)))[-1][0]


PROMPT = [5, 6, 7, 8, 9]


def test_streaming_generation_equals_greedy_without_cache(answering) -> None:
    model, memory = answering
    expected = greedy_without_cache(model, memory, PROMPT, 12)
    assert len(set(expected)) > 2  # not a degenerate repetition that any bug would reproduce
    assert list(model.generate(memory, PROMPT, max_new_tokens=12, stop_loops=False)) == expected


def test_sampling_is_reproducible_with_a_seeded_generator(answering) -> None:
    model, memory = answering

    def sample(seed: int, top_p: float) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return list(model.generate(memory, PROMPT, max_new_tokens=10, temperature=1.0, top_p=top_p, generator=generator))

    assert sample(0, 0.9) == sample(0, 0.9)
    assert len(sample(0, 0.9)) == 10
    # the nucleus of a vanishing top_p is the single most likely token: greedy decoding
    assert sample(1, 1e-9) == list(model.generate(memory, PROMPT, max_new_tokens=10))


def test_generation_stops_at_eos(answering) -> None:
    model, memory = answering
    greedy = list(model.generate(memory, PROMPT, max_new_tokens=12, stop_loops=False))
    eos = next(t for t in greedy[1:] if t != greedy[0])  # not the first token: something is yielded
    stop = greedy.index(eos)
    assert 0 < stop < 12
    assert list(model.generate(memory, PROMPT, max_new_tokens=12, eos_id=eos, stop_loops=False)) == greedy[:stop]


def test_score_is_the_log_likelihood_of_the_target(answering) -> None:
    model, _ = answering
    memories = torch.cat(list(model.read(tokens(1, 5 * SEGMENT, seed=5))))  # (5, M, d)
    target = [10, 11, 12, 13]
    ids = torch.tensor(PROMPT + target)
    expected = []
    with torch.no_grad():
        for memory in memories:
            embeds = torch.cat([memory, model.cell.embed(ids[None])[0]])[None]
            logits = model.backbone(inputs_embeds=embeds, position_ids=torch.arange(embeds.shape[1])[None], use_cache=False).logits[0]
            logp = F.log_softmax(logits.float(), dim=-1)
            first = MEM + len(PROMPT) - 1  # the position that predicts the first target token
            expected.append(sum(logp[first + j, t] for j, t in enumerate(target)))
    expected = torch.stack(expected)

    small_batches = model.score(memories, PROMPT, target, batch_size=2)
    one_batch = model.score(memories, PROMPT, target, batch_size=32)
    assert small_batches.shape == (5,)
    assert len(set(expected.tolist())) == 5  # the memories matter
    torch.testing.assert_close(small_batches, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(small_batches, one_batch, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "tokens, loops",
    [
        ([7, 7, 7, 7, 7, 7], True),  # one token six times
        ([1, 0, 0, 0], False),  # "1000": a number, not a loop
        ([5, 9, 5, 9, 5, 9], True),  # "of the" three times
        ([5, 9, 5, 9], False),  # twice is not yet a loop
        ([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4], True),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9], False),
    ],
)
def test_closes_loop(tokens: list[int], loops: bool) -> None:
    assert closes_loop(tokens) == loops


def test_generation_stops_before_closing_a_loop(answering) -> None:
    """A model whose every step predicts the same token yields it until the loop would close."""
    model, memory = answering

    def always_eleven(module: torch.nn.Module, args: tuple, logits: Tensor) -> Tensor:
        return torch.zeros_like(logits).index_fill(-1, torch.tensor([11]), 1.0)

    handle = model.backbone.get_output_embeddings().register_forward_hook(always_eleven)
    try:
        assert list(model.generate(memory, PROMPT, max_new_tokens=20, stop_loops=False)) == [11] * 20
        assert list(model.generate(memory, PROMPT, max_new_tokens=20)) == [11] * 5
    finally:
        handle.remove()
