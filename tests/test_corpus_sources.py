"""Sources without retrieval: the coarse-to-fine search, and a planted fact found on its PDF
page through the real ingest, store and provenance (with a reader whose memory records
deterministically whether the fact was read)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.service.corpus_service import CorpusService
from model.rises import cut_points, find_rises
from tests.corpus_helpers import FactReader, book_lines, shared_model_dir, write_pdf, write_text

FACT = "The harbour code is Quetzalcoatl."


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return shared_model_dir()


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from model.tokenizer import load_tokenizer

    return load_tokenizer(model_dir)


def fact_reader(tokenizer, other_text: list[str], segment_size: int = 32) -> FactReader:
    others = {t for line in other_text for t in tokenizer.encode(line + "\n")}
    fact_ids = [t for t in tokenizer.encode(FACT + "\n") if t not in others]
    assert fact_ids, "the fact needs a token of its own"
    return FactReader(fact_ids, tokenizer.encode(" Quetzalcoatl"), segment_size)


@pytest.mark.parametrize("where", [0, 1, 4_096, 73_421, 99_999])
def test_find_rises_is_coarse_to_fine(where: int) -> None:
    calls = []

    def score(points):
        calls.append(len(points))
        return [3.0 if p >= where else -2.0 for p in points]

    found, scored = find_rises(score, -1, 99_999)
    assert found == [(where, 5.0)]
    assert len(calls) <= 5 and scored == sum(calls) < 170  # batched rounds, vs 100,001 memories to score
    calls.clear()
    small = where % 1000
    found, _ = find_rises(lambda ps: [3.0 if p >= small else -2.0 for p in ps], -1, 999)
    assert found == [(small, 5.0)]


def test_find_rises_reports_several_rises_best_first() -> None:
    steps = {10: 1.0, 500: 4.0, 900: 2.0}
    found, _ = find_rises(lambda ps: [sum(v for k, v in steps.items() if p >= k) for p in ps], -1, 999, beam=3, top=3)
    assert [segment for segment, _ in found] == [500, 900, 10]


def test_cut_points_split_at_documents() -> None:
    assert cut_points(0, 32, [13], pieces=8) == [4, 8, 12, 13, 16, 20, 24, 28, 32]
    assert cut_points(0, 32, [13, 40], pieces=1) == [13, 32]
    assert cut_points(64, 70, [], pieces=8) == [65, 66, 67, 68, 69, 70]


def test_sources_point_at_the_pdf_page_of_a_planted_fact(tmp_path, model_dir, tokenizer) -> None:
    pages = [book_lines(14, seed=page) for page in range(6)]
    fact_line = 9
    pages[2].insert(fact_line - 1, FACT)  # page 3, line 9
    path = write_pdf(tmp_path / "voyage.pdf", pages)
    others = [line for page in pages for line in page if line != FACT] + [f"# Document: {path}"]
    reader = fact_reader(tokenizer, others)
    service = CorpusService(tmp_path / "home", model_dir, model=reader)
    report = service.ingest([path], "voyage")
    assert report["documents"][0]["pages"] == 6 and report["segments"] > 16

    result = service.ask("voyage", "What is the harbour code?")
    assert result["answer"] == "Quetzalcoatl"
    best = result["sources"][0]
    assert (best["path"], best["page"]) == (str(path), 3)
    assert best["lines"][0] <= fact_line <= best["lines"][1] and "Quetzalcoatl" in best["excerpt"]
    assert best["score"] == pytest.approx(5.0) and len(result["sources"]) == 1
    assert reader.scored < 60  # coarse to fine, not every saved memory

    # As of page 2 the fact has not been read: no rise, no source; as of page 3 it has.
    before = service.ask("voyage", "What is the harbour code?", as_of="voyage.pdf#page=2")
    assert before["as_of"] == f"{path}#page=2" and before["sources"] == []
    after = service.ask("voyage", "What is the harbour code?", as_of="voyage.pdf#page=3")
    assert after["sources"][0]["page"] == 3


def test_sources_give_the_line_range_in_a_text_file(tmp_path, model_dir, tokenizer) -> None:
    lines = book_lines(120, seed=7)
    lines.insert(56, FACT)  # line 57
    path = write_text(tmp_path / "log.txt", lines)
    reader = fact_reader(tokenizer, [line for line in lines if line != FACT] + [f"# Document: {path}"])
    service = CorpusService(tmp_path / "home", model_dir, model=reader)
    service.ingest([path], "log")
    source = service.ask("log", "Code?")["sources"][0]
    assert source["page"] is None and source["lines"][0] <= 57 <= source["lines"][1] and source["lines"][1] - source["lines"][0] <= 2
    assert "Quetzalcoatl" in source["excerpt"] and len(source["excerpt"]) <= 300


def test_a_real_reader_scores_saved_memories(tmp_path, model_dir) -> None:
    """The tiny random RMT: sources are well-formed and the states scored are the saved ones."""
    torch.set_num_threads(1)
    path = write_text(tmp_path / "a.txt", book_lines(60, seed=3))
    service = CorpusService(tmp_path / "home", model_dir)
    service.ingest([path], "a")
    result = service.ask("a", "Where did the ship sail?", max_new_tokens=4)
    assert result["answer"] and result["seconds"] > 0
    for source in result["sources"]:
        assert source["path"] == str(path) and source["page"] is None and 1 <= source["lines"][0] <= source["lines"][1] <= 60
