"""Corpora: append, change, remove, model change, cancel, lock -- with a tiny random reader.

Every incremental run is checked against reading the same documents from scratch: the
final memory must be identical bit for bit (float32, CPU, one thread)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from app.corpus.errors import CorpusLocked
from app.corpus.store import CorpusStore
from app.service.corpus_service import CorpusError, CorpusService
from ingest.stream import DOCUMENT_HEADER
from model.tokenizer import load_tokenizer
from tests.corpus_helpers import SEGMENT, CountingReader, book_lines, make_model_dir, shared_model_dir, write_text

SHARD = 4  # segments per shard: small, so that shard boundaries matter in small corpora


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("RMTQA_SHARD_SEGMENTS", str(SHARD))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return shared_model_dir()


@pytest.fixture(scope="module")
def reader(model_dir):
    from model.backbones import load_rmt

    return load_rmt(model_dir)


@pytest.fixture
def service(tmp_path, model_dir, reader) -> CorpusService:
    return CorpusService(tmp_path / "home", model_dir, model=CountingReader(reader))


@pytest.fixture
def docs(tmp_path) -> list[Path]:
    folder = tmp_path / "docs"
    folder.mkdir()
    return [write_text(folder / f"{name}.txt", book_lines(lines, seed=seed)) for name, lines, seed in (("a", 30, 1), ("b", 25, 2), ("c", 20, 3))]


def fresh_sha(tmp_path: Path, model_dir: Path, reader, paths: list[Path]) -> str:
    """The final memory of reading `paths` into a brand-new corpus in one go."""
    other = CorpusService(tmp_path / "reference", model_dir, model=reader)
    report = other.ingest(paths, "ref")
    assert report["segments_read"] == report["segments"]
    return report["memory_sha256"]


def test_append_reads_only_new_segments(service, docs, tmp_path, model_dir, reader) -> None:
    first = service.ingest([docs[0]], "books")
    assert first["complete"] and first["segments_read"] == first["segments"] and first["first_segment_read"] == 0
    assert first["corpus"] == "books" and first["documents"][0]["path"] == str(docs[0]) and first["bytes"] > 0
    assert first["tokens"] % SEGMENT, "the test needs a partial last segment"
    counter = service._injected
    before = counter.read_segments
    second = service.ingest([docs[1]], "books")
    full_segments_of_a = first["tokens"] // SEGMENT
    # Only the old partial segment (no longer the same segment) and the new ones are read.
    assert second["first_segment_read"] == full_segments_of_a == second["first_changed_segment"]
    assert second["segments_read"] == second["segments"] - full_segments_of_a
    assert counter.read_segments - before == second["segments_read"]
    assert second["sources"] == [str(docs[0]), str(docs[1])]
    assert second["memory_sha256"] == fresh_sha(tmp_path, model_dir, reader, docs[:2])
    # Nothing changed: nothing is read.
    again = service.ingest([docs[1]], "books")
    assert again["segments_read"] == 0 and again["memory_sha256"] == second["memory_sha256"]
    assert counter.read_segments - before == second["segments_read"]


def test_changed_document_rereads_from_its_segment(service, docs, tmp_path, model_dir, reader) -> None:
    report = service.ingest(docs, "books")
    b_start = report["documents"][1]["token_start"]
    lines = docs[1].read_text().splitlines()
    lines[10] = "A completely different line about penguins."
    docs[1].write_text("\n".join(lines) + "\n")
    # The first token that differs: b's start + its header + its first ten lines.
    from model.tokenizer import load_tokenizer

    tok = load_tokenizer(model_dir)
    header = len(tok.encode(f"# Document: {docs[1]}\n"))
    changed_token = b_start + header + sum(len(tok.encode(line + "\n")) for line in lines[:10])
    changed_segment = changed_token // SEGMENT
    counter = service._injected
    before = counter.read_segments
    redo = service.ingest(docs, "books")
    assert redo["first_changed_segment"] == changed_segment
    # Restart at the nearest exact state at or before it (a shard boundary: < SHARD segments earlier).
    assert changed_segment - SHARD < redo["first_segment_read"] <= changed_segment
    assert counter.read_segments - before == redo["segments_read"] == redo["segments"] - redo["first_segment_read"]
    assert redo["memory_sha256"] == fresh_sha(tmp_path, model_dir, reader, docs)


def test_removed_document_rereads_from_its_start(service, docs, tmp_path, model_dir, reader) -> None:
    report = service.ingest(docs, "books")
    b_start = report["documents"][1]["token_start"]
    redo = service.remove_documents("books", [docs[1]])
    # b's header and c's share their first tokens ("# Document: /tmp/.../docs/"), so the first
    # changed segment is b's first or a later one, but no later than the end of b's header
    # (how far depends on the length of the temporary path).
    header_tokens = len(load_tokenizer(model_dir).encode(DOCUMENT_HEADER.format(source=docs[1])))
    assert b_start // SEGMENT <= redo["first_changed_segment"] <= (b_start + header_tokens) // SEGMENT
    assert redo["first_changed_segment"] - SHARD < redo["first_segment_read"] <= redo["first_changed_segment"]
    assert [d["path"] for d in redo["documents"]] == [str(docs[0]), str(docs[2])]
    assert redo["memory_sha256"] == fresh_sha(tmp_path, model_dir, reader, [docs[0], docs[2]])
    with pytest.raises(CorpusError, match="not one of the paths"):
        service.remove_documents("books", [docs[1]])


def test_other_model_rebuilds_and_never_mixes(service, docs, tmp_path) -> None:
    first = service.ingest(docs[:1], "books")
    other_dir = make_model_dir(tmp_path / "other", seed=1)
    other = CorpusService(tmp_path / "home", other_dir)
    with pytest.raises(CorpusError, match="read with model .*rmtqa ingest"):
        other.ask("books", "Who?")
    rebuilt = other.ingest(docs[:1], "books")
    assert rebuilt["rebuilt"] and "another model" in rebuilt["rebuilt"]
    assert rebuilt["segments_read"] == rebuilt["segments"] and rebuilt["memory_sha256"] != first["memory_sha256"]
    listed = other.list_corpora()[0]
    assert listed["model"] == str(other_dir) and listed["memory_sha256"] == rebuilt["memory_sha256"]


def test_cancel_saves_progress_and_resumes_exactly(service, docs, tmp_path, model_dir, reader) -> None:
    cancel = threading.Event()
    events = []

    def progress(event):
        events.append(event)
        if event["phase"] == "read" and event["segments_done"] == 2 * SHARD + 1:
            cancel.set()

    stopped = service.ingest(docs, "books", progress=progress, cancel=cancel)
    assert stopped["cancelled"] and not stopped["complete"] and stopped["memory_sha256"] is None
    assert any(e["phase"] == "scan" for e in events) and events[-1]["eta_s"] is not None
    listed = service.list_corpora()[0]
    assert listed["segments_saved"] == 2 * SHARD + 1 and not listed["complete"]
    # Asking meanwhile answers from the last saved segment.
    partial = service.ask("books", "Who wrote?", max_new_tokens=3, sources=False)
    assert partial["segment"] == 2 * SHARD + 1 and not partial["complete"]  # segments count from 1
    resumed = service.ingest(docs, "books")
    assert resumed["first_segment_read"] == 2 * SHARD + 1 and resumed["complete"]
    assert resumed["memory_sha256"] == fresh_sha(tmp_path, model_dir, reader, docs)


def test_lock_refuses_a_second_writer(service, docs, tmp_path) -> None:
    service.ingest(docs[:1], "books")
    with CorpusStore(tmp_path / "home").writer("books"):
        with pytest.raises(CorpusLocked, match=r"corpus books is being written by another process \(pid \d+\)"):
            service.ingest(docs[1:2], "books")
        with pytest.raises(CorpusLocked):
            service.remove("books")
        # Readers never wait for the lock.
        assert service.ask("books", "Who?", max_new_tokens=2, sources=False)["segment"] >= 0
        assert service.list_corpora()[0]["writing"]
    assert not service.list_corpora()[0]["writing"]
    assert service.ingest(docs[1:2], "books")["complete"]
    service.remove("books")
    assert service.list_corpora() == []


def test_ask_stream_as_of_and_documents(service, docs) -> None:
    service.ingest(docs, "books")
    events = list(service.ask_stream("books", "What did Walton write?", max_new_tokens=6))
    tokens, result = events[:-1], events[-1]
    assert all(e["type"] == "token" for e in tokens) and result["type"] == "result"
    assert "".join(e["text"] for e in tokens).strip() == result["answer"]
    for source in result["sources"]:
        assert set(source) >= {"path", "page", "lines", "excerpt", "score"} and source["page"] is None
        assert len(source["excerpt"]) <= 300 and source["lines"][0] <= source["lines"][1] and source["score"] > 0
    listing = service.documents("books")
    assert [d["path"] for d in listing] == [str(p) for p in docs] and all(d["saved"] for d in listing)
    as_of = service.ask("books", "What?", as_of="a.txt", max_new_tokens=2)
    assert as_of["as_of"] == str(docs[0]) and as_of["segment"] == listing[0]["segment_end"]
    assert all(s["segment"] <= as_of["segment"] for s in as_of["sources"])
    assert service.ask("books", "What?", as_of="segment:1", max_new_tokens=2)["segment"] == 1
    with pytest.raises(CorpusError, match="no document"):
        service.ask("books", "What?", as_of="missing.txt")
    with pytest.raises(CorpusError, match="no corpus named nope"):
        service.ask("nope", "What?")
