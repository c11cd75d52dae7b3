"""The service's guards and what users read: the question cap, uploads named as uploaded and
gone with their corpus, the per-upload token cap, a corpus in its first seconds, 1-based
segment numbers, code excerpts with their lines, sources that open, scan progress per file
and page, the smoothed reading rate."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from app.cli.main import main
from app.corpus.errors import CorpusLocked
from app.corpus.store import CorpusStore
from app.service.corpus_service import CorpusError, CorpusService
from app.service.ingesting import _SmoothedRate
from tests.corpus_helpers import FactReader, book_lines, shared_model_dir, write_pdf, write_text

FACT = "The harbour code is Quetzalcoatl."


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("RMTQA_SHARD_SEGMENTS", "4")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reader():
    from model.backbones import load_rmt

    return load_rmt(shared_model_dir())


@pytest.fixture
def service(tmp_path, reader) -> CorpusService:
    return CorpusService(tmp_path / "home", shared_model_dir(), model=reader, max_question_tokens=16)


def stage(service: CorpusService, *files: Path):
    return service.uploads.stage([str(f) for f in files])


def test_a_question_over_the_cap_is_refused_at_once(service, tmp_path) -> None:
    service.ingest([write_text(tmp_path / "a.txt", book_lines(10))], "a")
    for question, size in (("where " * 13_000, "77,999 characters"), ("where is the ship " * 8, "32 tokens")):
        started = time.perf_counter()
        with pytest.raises(CorpusError, match=f"the question is too long \\({size}.*the limit is 16 tokens"):
            service.ask("a", question)
        assert time.perf_counter() - started < 1.0
    assert service.ask("a", "Where is the ship?", max_new_tokens=2, sources=False)["answer"] is not None


def test_uploads_are_named_as_uploaded_and_go_with_their_corpus(service, tmp_path) -> None:
    folder = tmp_path / "client"
    folder.mkdir()
    notes = write_text(folder / "notes.txt", book_lines(20, seed=1))
    copy = write_text(tmp_path / "copy.txt", book_lines(20, seed=1))
    report = service.ingest([], "up", uploads=stage(service, notes, copy))
    home = str(service.home)
    assert [d["path"] for d in report["documents"]] == ["notes.txt"]
    assert report["skipped"] == [{"path": "copy.txt", "reason": "duplicate of notes.txt"}]
    snapshot = service.store.open("up")
    header = service.load_model().tokenizer.decode(snapshot.token_ids(0, 12))
    assert header.startswith("# Document: notes.txt") and home not in header  # what the model reads
    assert service.ask("up", "Who?", max_new_tokens=2, as_of="notes.txt")["as_of"] == "notes.txt"
    assert sorted(p.name for p in (service.home / "uploads" / "up").iterdir()) == ["copy.txt", "notes.txt"]
    assert not any((service.home / "uploads" / ".incoming").iterdir())  # nothing staged is left

    service.history.add("up", "Who?", {"answer": "x"})
    service.remove("up")
    assert not (service.home / "uploads" / "up").exists() and service.history.load("up") == []


def test_a_refused_upload_is_not_kept(service, tmp_path) -> None:
    first = write_text(tmp_path / "a.txt", book_lines(10, seed=1))
    service.ingest([], "keep", uploads=stage(service, first))
    kept = (service.home / "uploads" / "keep" / "a.txt").read_text()
    other = write_text(tmp_path / "b.txt", book_lines(10, seed=2))
    with CorpusStore(service.home).writer("keep"):  # another process is writing it
        with pytest.raises(CorpusLocked):
            service.ingest([], "keep", uploads=stage(service, other))
    (tmp_path / "new").mkdir()
    changed = write_text(tmp_path / "new" / "a.txt", book_lines(400, seed=3))  # a.txt again, changed and too long
    with pytest.raises(CorpusError, match=r"this upload is too large to read here \(0\.\d MB, more than 200 tokens.*the limit is 200 tokens per upload"):
        service.ingest([], "keep", uploads=stage(service, changed), max_tokens=200)
    assert sorted(p.name for p in (service.home / "uploads" / "keep").iterdir()) == ["a.txt"]
    assert (service.home / "uploads" / "keep" / "a.txt").read_text() == kept  # the replaced upload is back
    assert not any((service.home / "uploads" / ".incoming").iterdir())
    with pytest.raises(CorpusError, match="too large"):  # a new corpus over the cap: nothing is created
        service.ingest([], "big", uploads=stage(service, changed), max_tokens=200)
    assert [c["name"] for c in service.list_corpora()] == ["keep"] and not (service.home / "uploads" / "big").exists()


def test_cancel_while_scanning_changes_nothing(service, tmp_path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CorpusError, match="cancelled while scanning the files; nothing was changed"):
        service.ingest([write_text(tmp_path / "a.txt", book_lines(10))], "c", cancel=cancel)
    assert service.list_corpora() == []


def test_a_corpus_in_its_first_seconds_says_it_is_being_read(service, tmp_path) -> None:
    with CorpusStore(service.home).writer("fresh"):  # the first reading is scanning: no manifest yet
        with pytest.raises(CorpusError, match="corpus fresh is being read: nothing of it is saved yet"):
            service.ask("fresh", "Who?")
        [listed] = service.list_corpora()
        assert (listed["name"], listed["state"], listed["segments"]) == ("fresh", "reading", 0)
    assert service.list_corpora() == []

    first_segment, go_on = threading.Event(), threading.Event()

    def progress(event):  # hold the reading after its first segment, before any is saved
        if event["phase"] == "read":
            first_segment.set()
            go_on.wait(30)

    path = write_text(tmp_path / "a.txt", book_lines(40))
    reading = threading.Thread(target=service.ingest, args=([path], "fresh"), kwargs={"progress": progress})
    reading.start()
    try:
        assert first_segment.wait(30)
        with pytest.raises(CorpusError, match="corpus fresh is being read: no segment of it is saved yet"):
            service.ask("fresh", "Who?")
        assert [(c["name"], c["state"]) for c in service.list_corpora()] == [("fresh", "reading")]
    finally:
        go_on.set()
        reading.join(30)
    assert service.list_corpora()[0]["state"] == "complete"


def test_segments_count_from_one_in_the_cli_and_the_service(service, tmp_path, capsys, monkeypatch) -> None:
    cancel = threading.Event()

    def progress(event):
        if event["phase"] == "read" and event["segments_done"] == 5:
            cancel.set()

    path = write_text(tmp_path / "a.txt", book_lines(80))
    service.ingest([path], "part", progress=progress, cancel=cancel)
    [listed] = service.list_corpora()
    assert listed["state"] == "partial" and listed["segments_saved"] == 5
    answer = service.ask("part", "Who?", max_new_tokens=2, sources=False)
    assert answer["segment"] == 5 and not answer["complete"]  # after segment 5, the last one saved
    assert service.ask("part", "Who?", max_new_tokens=2, sources=False, as_of="segment:1")["segment"] == 1
    with pytest.raises(CorpusError, match=r"segment 0 is not saved in corpus part \(segments 1 to 5 are\)"):
        service.ask("part", "Who?", as_of="segment:0")
    assert service.documents("part")[0]["segment_start"] == 1

    monkeypatch.setenv("RMTQA_HOME", str(service.home))
    assert main(["ask", "part", "Who?", "--no-sources", "--max-new-tokens", "2", "--model", str(shared_model_dir())]) == 0
    out = capsys.readouterr().out
    assert f"answered after segment 5 of {listed['segments']}" in out
    assert main(["corpora"]) == 0
    assert "partly read: ingest again to continue (5/" in capsys.readouterr().out


def test_code_excerpts_keep_their_lines_and_sources_open(tmp_path) -> None:
    from model.tokenizer import load_tokenizer

    model_dir = shared_model_dir()
    tok = load_tokenizer(model_dir)
    code = [f"def step_{i}(x):\n    return x + {i}\n" for i in range(30)]
    code[17] = "def harbour():\n    return 'Quetzalcoatl'\n"
    path = tmp_path / "repo" / "harbour.py"
    path.parent.mkdir()
    path.write_text("".join(code))
    others = {t for i, block in enumerate(code) if i != 17 for line in block.splitlines() for t in tok.encode(line + "\n")}
    others |= set(tok.encode(f"# File: {path}\n"))
    fact = [t for t in tok.encode("    return 'Quetzalcoatl'\n") if t not in others]
    service = CorpusService(tmp_path / "home", model_dir, model=FactReader(fact, tok.encode(" Quetzalcoatl")))
    service.ingest([path.parent], "code")
    source = service.ask("code", "What does harbour return?")["sources"][0]
    assert "\n" in source["excerpt"] and "    return 'Quetzalcoatl'" in source["excerpt"].split("\n")
    first, last = source["lines"]
    assert first <= 36 <= last  # `return 'Quetzalcoatl'` is line 36

    opened = service.passage("code", source["path"], source["page"], source["lines"])
    numbers = [line["number"] for line in opened["lines"]]
    assert opened["kind"] == "code" and numbers == list(range(max(first - 8, 1), last + 9))
    cited = [line for line in opened["lines"] if line["cited"]]
    assert [line["number"] for line in cited] == list(range(first, last + 1))
    assert any(line["text"] == "    return 'Quetzalcoatl'" for line in cited)


def test_a_pdf_source_opens_on_its_page_and_scanning_counts_files_and_pages(service, tmp_path) -> None:
    pages = [book_lines(6, seed=page) for page in range(3)]
    pdf = write_pdf(tmp_path / "voyage.pdf", pages)
    events = []
    service.ingest([pdf, write_text(tmp_path / "notes.txt", book_lines(5))], "pdf", progress=events.append)
    scans = [e for e in events if e["phase"] == "scan"]
    assert [(e["files"], e["pages"], e["documents"]) for e in scans] == [(1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 3, 4)]
    opened = service.passage("pdf", str(pdf), 2, [3, 4])
    assert [line["text"] for line in opened["lines"]] == pages[1]  # the whole page
    assert [line["number"] for line in opened["lines"] if line["cited"]] == [3, 4]
    with pytest.raises(CorpusError, match="no .*voyage.pdf page 9"):
        service.passage("pdf", str(pdf), 9, [1, 1])


def test_the_reading_rate_is_smoothed(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr("app.service.ingesting.time.perf_counter", lambda: now[0])
    rate = _SmoothedRate(0.0)
    tokens = 0
    for _ in range(60):  # a minute at 1,000 tokens/s, one segment a second
        now[0] += 1.0
        tokens += 1000
        assert rate.update(tokens) == pytest.approx(1000)
    now[0] += 5.0  # one segment took 5 s (the machine got busy for a moment)
    tokens += 1000
    slowed = rate.update(tokens)
    assert 750 < slowed < 1000  # the estimate moves, it does not drop to 200 tokens/s
