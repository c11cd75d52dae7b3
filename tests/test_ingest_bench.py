"""`python -m bench.ingest --json` prints one JSON line with the agreed measurements."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ingest as bench

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"


def test_bench_json_line(tmp_path: Path, capsys, monkeypatch) -> None:
    if not SAMPLE.is_file():
        pytest.skip("shared data not available")
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "b.py").write_text("from a import A\n")
    monkeypatch.setattr("app.cli.commands.ingest.default_model_dir", lambda: tmp_path / "no-model")
    assert bench.main(["--json", "--pdf", str(SAMPLE), "--tree", str(tmp_path), "--repeat", "1", "--ocr-pages", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = json.loads(out)
    assert result["pdf"]["pages"] == 4 and result["pdf"]["pages_per_s"] > 0 and result["pdf"]["mb_per_s"] > 0
    assert "overhead" in result["pdf"] and result["pdf"]["bare_pypdf_pages_per_s"] > 0
    assert result["code_tree"]["files"] == 2 and result["code_tree"]["files_per_s"] > 0 and result["code_tree"]["mb_per_s"] > 0
    assert result["peak_rss_mb"] > 0 and result["tokenizer"] == "bytes:utf-8"
    ocr = result["ocr"]
    assert "skipped" in ocr or (ocr["pages"] == ocr["pages_read"] == 1 and ocr["pages_per_s"] > 0 and ocr["word_accuracy"] > 0.9)
