"""OCR of PDF pages without a text layer: the real engine where the `ocr` extra is installed,
a stand-in for what it plugs into (corpora keep it, sources say so) everywhere."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from app.cli.commands import ingest as command
from app.cli.main import main
from app.webui.formatting import source_line
from ingest import ocr as ocr_module
from ingest.limits import Limits
from ingest.pdf import NO_TEXT_FOUND, NO_TEXT_LAYER
from ingest.pipeline import ingest_paths
from ingest.tokenizers import ByteTokenizer
from tests.corpus_helpers import book_lines, shared_model_dir, write_pdf, write_text

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pdf-samples"
# The corpus's image-only pages are pictures (files.json: 019 a drawing, 023 a photo, 007
# 4-point squares); the scanned text page is made from 001's text page.
PICTURE_PAGE = SAMPLES / "019-grayscale-image" / "grayscale-image.pdf"
TEXT_PAGE = SAMPLES / "001-trivial" / "minimal-document.pdf"
needs_engine = pytest.mark.skipif(bool(ocr_module.missing_modules()), reason="the ocr extra is not installed (make ocr)")
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared pdf-samples not available")


def scan_of(pdf: Path, target: Path, dpi: int = 150) -> Path:
    """An image-only copy of the first page of `pdf`, as a scanner would make it."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    document[0].render(scale=dpi / 72, grayscale=True).to_pil().save(target, resolution=dpi)
    document.close()
    return target


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: models must come from the installed package."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"OCR tried to open a connection: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@needs_engine
@needs_samples
def test_a_scanned_page_yields_text_with_ocr_and_a_picture_page_is_reported(tmp_path: Path, monkeypatch, capsys, no_network) -> None:
    monkeypatch.setattr(command, "default_model_dir", lambda: tmp_path / "no-model")
    scan = scan_of(TEXT_PAGE, tmp_path / "scan.pdf")
    report, _ = ingest_paths([scan], ByteTokenizer())
    assert report.documents == [] and report.skipped[0].reason.startswith(NO_TEXT_LAYER)

    assert main(["ingest", str(scan), str(PICTURE_PAGE), "--dry-run", "--json", "--ocr"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert [(d["path"], d["pages"]) for d in result["documents"]] == [(str(scan), 1)] and result["tokens"] > 500
    assert result["skipped"] == [{"path": str(PICTURE_PAGE), "reason": f"{NO_TEXT_FOUND} (1 page)"}] and err == ""

    report, stream = ingest_paths([scan], ByteTokenizer(), ocr=ocr_module.PageOcr(dpi=100))
    source = stream.locate(stream.records[0].header_tokens + 5)
    assert (source["page"], source["ocr"]) == (1, True)
    text = bytes(stream.tokens.tolist()).decode()  # ByteTokenizer: the ids are the UTF-8 bytes
    assert "Lorem ipsum dolor sit amet" in text and "sanctus est" in text


@needs_engine
@needs_samples
def test_pages_are_rendered_within_the_pixel_cap(tmp_path: Path, monkeypatch) -> None:
    shapes = []

    class Engine:
        def __call__(self, image):
            shapes.append(image.shape)
            return type("Result", (), {"txts": ("seen",)})()

    engine = ocr_module.PageOcr(Limits(max_ocr_pixels=20_000))
    monkeypatch.setattr(engine, "_load", lambda: Engine())
    report, _ = ingest_paths([scan_of(TEXT_PAGE, tmp_path / "scan.pdf", dpi=30)], ByteTokenizer(), ocr=engine)
    assert [entry.pages for entry in report.documents] == [1]
    assert shapes and shapes[0][0] * shapes[0][1] <= 20_000 * 1.05  # pdfium rounds each side up


def test_ocr_without_the_extra_is_one_clear_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(command, "default_model_dir", lambda: tmp_path / "no-model")
    monkeypatch.setattr(ocr_module, "missing_modules", lambda: ["rapidocr"])
    write_text(tmp_path / "notes.txt", ["a line"])
    assert main(["ingest", str(tmp_path / "notes.txt"), "--dry-run", "--ocr"]) == 1
    assert capsys.readouterr().err == "rmtqa: error: OCR needs rapidocr: install the OCR extra: make ocr (or pip install -e '.[ocr]')\n"


class StandInOcr:
    """Reads every page without a text layer as the same sentence (no engine, no rendering)."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.pages = 0

    def pdf_page_text(self, document, number: int) -> str:
        self.pages += 1
        return "The scanned ledger says the vault code is 4417."


def test_a_corpus_read_with_ocr_keeps_it_and_its_sources_say_so(tmp_path: Path, monkeypatch) -> None:
    from app.service.corpus_service import CorpusService

    monkeypatch.setattr("ingest.pipeline.PageOcr", StandInOcr)
    monkeypatch.setattr("ingest.ocr.LazyPdf.document", lambda self: None)
    scanned = write_pdf(tmp_path / "ledger.pdf", [book_lines(4), []])  # page 2 has no text layer
    service = CorpusService(tmp_path / "home", shared_model_dir(), max_question_tokens=64)
    first = service.ingest([scanned], "ledger", ocr=True)
    assert first["ocr"] is True and first["documents"][0]["pages"] == 2 and first["skipped"] == []
    more = service.ingest([write_text(tmp_path / "notes.txt", book_lines(3))], "ledger")  # no --ocr: kept
    assert more["ocr"] is True and [d["pages"] for d in more["documents"]] == [2, None]
    index = service.store.open("ledger").documents()
    start = next(r["token_start"] for r in index.records if r["page"] == 2)
    assert index.provenance(start, start + 1)[0]["ocr"] is True
    assert "ocr" not in index.provenance(0, 1)[0]
    answer = service.ask("ledger", "What is the vault code?")
    assert answer["sources"] and all(source.get("ocr") == (source["page"] == 2 or None) for source in answer["sources"])
    assert source_line({"path": "ledger.pdf", "page": 2, "lines": [1, 1], "ocr": True}) == "ledger.pdf, page 2 (OCR), line 1"
