"""The CLI contract (`ingest --corpus`, `ask`, `corpora`, `rm`) and the langchain Runnable."""
from __future__ import annotations

import functools
import io
import json
import operator

import pytest
import torch

from app.cli.main import main
from app.corpus.store import CorpusStore
from app.service.corpus_service import CorpusService
from app.service.qa_runnable import CorpusQA
from tests.corpus_helpers import FactReader, book_lines, shared_model_dir, write_pdf, write_text


@pytest.fixture
def home(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("RMTQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RMTQA_SHARD_SEGMENTS", "4")
    return tmp_path / "home"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class Terminal(io.StringIO):
    """Standard input that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_ingest_ask_corpora_rm(home, tmp_path, capsys, monkeypatch) -> None:
    model_dir = shared_model_dir()
    text = write_text(tmp_path / "notes.txt", book_lines(40, seed=5))
    pdf = write_pdf(tmp_path / "paper.pdf", [book_lines(8, seed=6), book_lines(8, seed=7)])

    code, out, err = run(capsys, "ingest", str(text), str(pdf), "--corpus", "mine", "--model", str(model_dir), "--json")
    assert code == 0 and len(out.splitlines()) == 1
    report = json.loads(out)
    assert {"documents", "skipped", "tokens", "seconds", "segments", "segments_read", "corpus", "bytes"} <= set(report)
    assert [d["path"] for d in report["documents"]] == [str(text), str(pdf)] and report["documents"][1]["pages"] == 2

    code, out, _ = run(capsys, "ask", "mine", "Where did the ship sail?", "--json")  # the corpus's own model
    assert code == 0
    answer = json.loads(out)
    assert {"answer", "sources", "seconds"} <= set(answer) and isinstance(answer["answer"], str)
    for source in answer["sources"]:
        assert set(source) >= {"path", "page", "lines", "excerpt", "score"}
        assert source["page"] is None if source["path"] == str(text) else source["page"] in (1, 2)

    code, out, _ = run(capsys, "ask", "mine", "Where?", "--as-of", "notes.txt", "--max-new-tokens", "3")
    assert code == 0 and "as of " + str(text) in out

    code, out, _ = run(capsys, "corpora", "--json")
    listed = json.loads(out)
    assert [c["name"] for c in listed] == ["mine"]
    assert {"name", "documents", "tokens", "segments", "model", "memory_sha256", "bytes"} <= set(listed[0])
    assert listed[0]["documents"] == 2 and listed[0]["memory_sha256"] == report["memory_sha256"] and listed[0]["model"] == str(model_dir)
    assert listed[0]["state"] == "complete"
    code, out, _ = run(capsys, "corpora")
    header, row = out.splitlines()
    assert code == 0 and header.split() == ["CORPUS", "FILES", "TOKENS", "SEGMENTS", "SIZE", "STATE", "MODEL"]
    assert row.split()[:2] == ["mine", "2"] and " complete " in row
    code, out, _ = run(capsys, "corpora", "mine")  # the documents of one corpus, in reading order
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["#", "FILE", "KIND"] and str(text) in lines[1] and str(pdf) in lines[2]
    assert lines[2].split()[3] == "2" and lines[-1].startswith("2 files;")
    assert [d["path"] for d in json.loads(run(capsys, "corpora", "mine", "--json")[1])] == [str(text), str(pdf)]

    code, out, _ = run(capsys, "rm", "mine", str(pdf), "--json")
    assert code == 0 and [d["path"] for d in json.loads(out)["documents"]] == [str(text)]
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))  # on a terminal `rm` asks first
    code, out, _ = run(capsys, "rm", "mine")
    assert code == 1 and "Delete corpus mine (1 file, " in out and "Kept corpus mine." in out
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, _ = run(capsys, "rm", "mine")
    assert code == 0 and "Removed corpus mine" in out
    code, out, _ = run(capsys, "corpora", "--json")
    assert json.loads(out) == []


def test_failures_are_one_line_and_non_zero(home, tmp_path, capsys) -> None:
    model_dir = shared_model_dir()
    text = write_text(tmp_path / "notes.txt", book_lines(10, seed=5))
    code, out, err = run(capsys, "ask", "nope", "What?")
    assert code == 1 and out == "" and err.startswith("rmtqa: error: no corpus named nope") and len(err.splitlines()) == 1
    code, _, err = run(capsys, "ingest", str(text))
    assert code == 1 and "--corpus NAME" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "ingest", str(tmp_path / "missing.txt"), "--corpus", "x", "--model", str(model_dir))
    assert code == 1 and "nothing readable" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "ingest", str(text), "--corpus", "bad/name", "--model", str(model_dir))
    assert code == 1 and "invalid corpus name" in err
    assert run(capsys, "ingest", str(text), "--corpus", "n", "--model", str(model_dir), "--json")[0] == 0
    with CorpusStore(home).writer("n"):
        code, out, err = run(capsys, "ingest", str(text), "--corpus", "n", "--model", str(model_dir), "--json")
        assert code == 1 and out == "" and len(err.splitlines()) == 1
        assert "corpus n is being written by another process (pid" in err
    code, out, _ = run(capsys, "ingest", str(text), "--dry-run", "--json")  # the ingest engineer's dry run is untouched
    assert code == 0 and "segments" not in json.loads(out)


def test_runnable_invoke_stream_batch(tmp_path) -> None:
    model_dir = shared_model_dir()
    from model.tokenizer import load_tokenizer

    tok = load_tokenizer(model_dir)
    path = write_text(tmp_path / "a.txt", book_lines(30, seed=1) + ["The harbour code is Quetzalcoatl."] + book_lines(30, seed=2))
    others = {t for line in book_lines(30, seed=1) + book_lines(30, seed=2) + [f"# Document: {path}"] for t in tok.encode(line + "\n")}
    reader = FactReader([t for t in tok.encode("The harbour code is Quetzalcoatl.\n") if t not in others], tok.encode(" Quetzal coatl"))
    service = CorpusService(tmp_path / "home", model_dir, model=reader)
    service.ingest([path], "a")
    qa = CorpusQA(service, "a")
    result = qa.invoke("What is the code?")
    assert result["answer"] == "Quetzal coatl" and result["sources"][0]["lines"][0] <= 31 <= result["sources"][0]["lines"][1]
    chunks = list(qa.stream({"question": "What is the code?"}))
    assert len(chunks) >= 3 and "sources" in chunks[-1]
    merged = functools.reduce(operator.add, chunks)
    assert merged["answer"] == result["answer"] and merged["sources"] == result["sources"]
    batch = qa.batch(["What is the code?", {"question": "Code?", "as_of": "segment:1"}])
    assert batch[0]["answer"] == result["answer"] and batch[1]["segment"] == 1 and batch[1]["sources"] == []
