"""The associative memory per layer (model/associative.py) on tiny random backbones."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from model.associative import AssociativeMemory, dpfp, feature_size
from model.backbones import load_rmt
from model.rmt import CONFIG_FILE, RecurrentMemoryTransformer
from tests.test_rmt import MEM, PROMPT, SEGMENT, greedy_without_cache, make_rmt, question, tokens

KEYS = 4


def with_associative(kind: str, write_source: str) -> RecurrentMemoryTransformer:
    """A tiny RMT with an associative memory whose read output is switched on (it starts at zero)."""
    model = make_rmt(kind)
    model.add_associative_memory(KEYS, write_source)
    with torch.no_grad():
        for memory in model.cell.associative.memories:
            memory.out.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    return model


def test_the_parallel_write_is_the_delta_rule_applied_position_by_position() -> None:
    torch.manual_seed(0)
    memory = AssociativeMemory(width=16, key_size=3, write_source="tokens")
    with torch.no_grad():
        memory.strength.bias.fill_(1.0)  # strong writes, so that order and overwriting matter
    hidden, matrix = torch.randn(2, 7, 16), torch.randn(2, feature_size(3), 16)
    weight = torch.ones(2, 7)
    weight[1, 5:] = 0  # padding writes nothing
    expected = matrix.clone()
    normalised = hidden / hidden.pow(2).mean(dim=-1, keepdim=True).sqrt()
    for t in range(7):
        h = normalised[:, t]
        k, v, b = dpfp(memory.key(h)), memory.value(h), torch.sigmoid(memory.strength(h)) * weight[:, t : t + 1]
        expected = expected + (b * k).unsqueeze(-1) * (v - torch.einsum("bp,bpd->bd", k, expected)).unsqueeze(1)
    assert torch.allclose(memory.write(hidden, weight, matrix), expected, atol=1e-5)
    assert torch.allclose(memory.write(hidden[1:, :5], weight[1:, :5], matrix[1:]), expected[1:], atol=1e-5)


def test_a_strongly_written_key_reads_back_its_value_and_overwrites_the_old_one() -> None:
    torch.manual_seed(0)
    memory = AssociativeMemory(width=16, key_size=3, write_source="memory")
    with torch.no_grad():
        memory.query.weight.copy_(memory.key.weight)  # a question that asks with the fact's key
        memory.out.weight.copy_(torch.eye(16))
        memory.strength.weight.zero_()
        memory.strength.bias.fill_(20.0)  # b = 1: the delta rule overwrites completely
    fact, old = torch.randn(1, 1, 16), torch.randn(1, feature_size(3), 16)  # old: whatever was stored
    matrix = memory.write(fact, torch.ones(1, 1), old)
    value = memory.value(fact / fact.pow(2).mean().sqrt())  # of the normalised fact, as written
    assert torch.allclose(memory.read(fact, matrix) - fact, value, atol=1e-4)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("write_source", ["memory", "tokens"])
def test_a_reader_given_an_associative_memory_answers_as_before_until_trained(kind: str, write_source: str) -> None:
    model = make_rmt(kind)
    ids = tokens(2, 3 * SEGMENT)
    before = list(model.read(ids))[-1]
    answer = list(model.generate(before[0], PROMPT, max_new_tokens=6, stop_loops=False))
    model.add_associative_memory(KEYS, write_source)
    after = list(model.read(ids))[-1]
    assert after.shape == (2, MEM + 2 * feature_size(KEYS), 64)  # M vectors, then A per layer
    assert torch.equal(after[:, :MEM], before) and after[:, MEM:].abs().sum() > 0  # written, not yet read
    assert list(model.generate(after[0], PROMPT, max_new_tokens=6, stop_loops=False)) == answer
    with pytest.raises(ValueError, match="already"):
        model.add_associative_memory(KEYS, write_source)


@pytest.mark.parametrize("write_source", ["memory", "tokens"])
def test_what_an_earlier_segment_wrote_reaches_the_answer_through_the_associative_memory(write_source: str) -> None:
    model = with_associative("llama", write_source)
    state = list(model.read(tokens(1, 2 * SEGMENT)))[-1]
    without = state.clone()
    without[:, MEM:] = 0  # the same memory vectors, an empty associative memory
    query = torch.tensor([PROMPT])
    with torch.no_grad():
        assert not torch.allclose(model.cell(query, None, state, write=False)[0], model.cell(query, None, without, write=False)[0])
    # and the write gets gradients from the answer two segments later
    model.train()
    query, labels = question(1)
    model(tokens(1, 2 * SEGMENT), query, labels).loss.backward()
    first = model.cell.associative.memories[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (first.key.weight, first.value.weight, first.strength.weight, first.query.weight))


def test_cached_decoding_reads_the_associative_memory_like_a_full_forward() -> None:
    model = with_associative("llama", "tokens")
    state = list(model.read(tokens(1, 40)))[-1][0]
    expected = greedy_without_cache(model, state, PROMPT, 10)
    assert len(set(expected)) > 2
    assert list(model.generate(state, PROMPT, max_new_tokens=10, stop_loops=False)) == expected


def test_a_copied_cell_reads_its_own_associative_memory() -> None:
    """int8 reading runs a deep copy of the cell: its hooks must serve the copy, not the original."""
    model = with_associative("llama", "memory")
    state = list(model.read(tokens(1, 2 * SEGMENT)))[-1]
    query = torch.tensor([PROMPT])
    twin = copy.deepcopy(model.cell)
    with torch.no_grad():
        assert torch.equal(twin(query, None, state, write=False)[0], model.cell(query, None, state, write=False)[0])


def test_the_associative_memory_round_trips_and_is_absent_from_configs_without_it(tmp_path) -> None:
    model = with_associative("llama", "tokens")
    model.save_pretrained(tmp_path / "armt")
    loaded = load_rmt(tmp_path / "armt")
    assert (loaded.config.associative_keys, loaded.config.associative_write) == (KEYS, "tokens")
    ids = tokens(2, 3 * SEGMENT)
    assert torch.equal(list(loaded.read(ids))[-1], list(model.read(ids))[-1])
    make_rmt("llama").save_pretrained(tmp_path / "plain")
    assert "associative_keys" not in json.loads((tmp_path / "plain" / CONFIG_FILE).read_text())["rmt"]


def test_an_unknown_write_source_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="memory, tokens"):
        make_rmt("llama").add_associative_memory(KEYS, "everything")


def test_a_corpus_read_with_an_associative_reader_stores_its_whole_state_and_answers_with_sources(tmp_path, monkeypatch, capsys) -> None:
    from app.cli.main import main
    from app.corpus.format import memory_sha256
    from app.corpus.store import CorpusStore
    from tests.corpus_helpers import book_lines, make_model_dir, write_text

    model_dir = make_model_dir(tmp_path / "model")
    model = load_rmt(model_dir)
    model.add_associative_memory(KEYS, "tokens")
    with torch.no_grad():
        for memory in model.cell.associative.memories:
            memory.out.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    model.save_pretrained(model_dir)
    monkeypatch.setenv("RMTQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RMTQA_SHARD_SEGMENTS", "4")
    text = write_text(tmp_path / "notes.txt", book_lines(40, seed=5))

    assert main(["ingest", str(text), "--corpus", "mine", "--model", str(model_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    final = CorpusStore(tmp_path / "home").open("mine").final_state()
    assert final.shape == (model.cell.state_rows, 64) and final[MEM:].abs().sum() > 0
    assert memory_sha256(final) == report["memory_sha256"]
    assert main(["ask", "mine", "Where did the ship sail?", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["sources"] and all(source["path"] == str(text) for source in answer["sources"])
