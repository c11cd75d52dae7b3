"""`rmtqa ingest --dry-run`: the JSON contract, the readable summary, no tracebacks."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from app.cli.commands import ingest as command
from app.cli.main import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def no_model(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(command, "default_model_dir", lambda: tmp_path / "no-model")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "book.txt").write_bytes("Caf\xe9 society\r\nsecond line\r\n".encode("cp1252"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    (root / "empty.md").write_bytes(b"")
    with zipfile.ZipFile(root / "code.zip", "w") as archive:
        archive.writestr("src/lib.py", "VALUE = 1\n")
        archive.writestr("src/main.py", "from lib import VALUE\n")
        archive.writestr("../escape.txt", "nope\n")
    return root


def test_json_report_contract(corpus: Path, no_model, capsys) -> None:
    assert main(["ingest", str(corpus), "--dry-run", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1
    report = json.loads(out)
    assert set(report) >= {"documents", "skipped", "tokens", "seconds", "tokenizer"}
    assert report["tokenizer"] == "bytes:utf-8"
    paths = [doc["path"] for doc in report["documents"]]
    assert paths == [f"{corpus}/book.txt", f"{corpus}/code.zip/src/lib.py", f"{corpus}/code.zip/src/main.py"]
    assert all({"path", "pages", "tokens"} <= set(doc) for doc in report["documents"])
    assert report["tokens"] == sum(doc["tokens"] for doc in report["documents"]) > 0
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    assert set(skipped) == {f"{corpus}/broken.pdf", f"{corpus}/empty.md", f"{corpus}/code.zip/../escape.txt"}
    assert all(reason and "\n" not in reason and "Traceback" not in reason for reason in skipped.values())


def test_readable_summary(corpus: Path, no_model, capsys) -> None:
    assert main(["ingest", str(corpus / "book.txt"), str(corpus / "empty.md"), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Read 1 file: ") and "tokenizer bytes:utf-8" in out
    assert "note: no model at" in out and f"{corpus}/empty.md: empty file" in out
    assert "Traceback" not in err


def test_nothing_readable_and_bad_model(tmp_path: Path, no_model, capsys) -> None:
    assert main(["ingest", str(tmp_path / "missing"), "--dry-run", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["skipped"] == [{"path": str(tmp_path / "missing"), "reason": "no such file or folder"}]
    assert main(["ingest", str(tmp_path), "--dry-run", "--model", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"rmtqa: error: no model directory at {tmp_path / 'nope'}\n"


def test_model_tokenizer_is_used(tmp_path: Path, corpus: Path, capsys) -> None:
    if not (DATA / "books").is_dir():
        pytest.skip("shared data not available")
    from model.tokenizer import train_sentencepiece

    text = (DATA / "books" / "alice-in-wonderland.txt").read_text(encoding="utf-8-sig")
    tokenizer = train_sentencepiece((line for line in text.splitlines() if line.strip()), tmp_path / "model", vocab_size=400)
    assert main(["ingest", str(corpus / "book.txt"), "--dry-run", "--json", "--model", str(tmp_path / "model")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokenizer"] == tokenizer.fingerprint

