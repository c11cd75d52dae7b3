"""PDF loading: pages with their numbers, and every way a PDF can be unreadable."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pypdf
import pytest

from ingest.pdf import NO_TEXT_LAYER, PdfLoader
from ingest.pipeline import ingest_paths
from ingest.report import IngestReport
from ingest.stream import CorpusStream
from ingest.tokenizers import ByteTokenizer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SAMPLES = DATA / "pdf-samples"


def data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip("shared data not available")
    return path


def load(path: Path, **kwargs):
    report = IngestReport()
    return PdfLoader(path, report, **kwargs).load(), report


def test_pages_carry_their_numbers_and_map_back() -> None:
    docs, report = load(data("books", "pride-and-prejudice.pdf"), pages=[10, 11, 12])
    assert [doc.metadata["page"] for doc in docs] == [10, 11, 12] and not report.skipped
    assert all(doc.metadata["kind"] == "pdf" and doc.metadata["line_start"] == 1 for doc in docs)
    stream = CorpusStream(ByteTokenizer())
    records = [stream.add(doc) for doc in docs]
    phrase = "Darcy was clever"
    page = next(doc for doc in docs if phrase in doc.page_content)
    record = records[docs.index(page)]
    index = record.token_start + record.header_tokens + len(page.page_content.split(phrase)[0].encode())
    where = stream.locate(index)
    line = page.page_content[: page.page_content.index(phrase)].count("\n") + 1
    assert (where["path"], where["page"], where["lines"]) == (str(data("books", "pride-and-prejudice.pdf")), 11, (line, line))
    assert where["excerpt"] == "D"


def test_sample_corpus_every_file_accounted_for(tmp_path: Path, capfd) -> None:
    """The py-pdf samples (minus the slow 117-page one): encrypted, image-only, damaged."""
    for pdf in sorted(data("pdf-samples").rglob("*.pdf")):
        if "geotopo" not in pdf.parent.name:
            shutil.copy(pdf, tmp_path / pdf.name)
    report, stream = ingest_paths([tmp_path], ByteTokenizer())
    read = {entry.path for entry in report.documents}
    whole_file_skips = {item.path for item in report.skipped if item.page is None}
    names = {str(tmp_path / path.name) for path in tmp_path.iterdir()}
    assert read | whole_file_skips == names
    reasons = {Path(item.path).name: item.reason for item in report.skipped if item.page is None}
    assert reasons["libreoffice-writer-password.pdf"] == "encrypted — needs a password"
    assert reasons["imagemagick-lzw.pdf"].startswith(NO_TEXT_LAYER)
    assert reasons["unreadablemetadata.pdf"].startswith("damaged or not a PDF")
    pages = {Path(e.path).name: e.pages for e in report.documents}
    assert pages["pdflatex-4-pages.pdf"] == 4 and pages["multicolumn.pdf"] == 3
    assert len(stream) == report.tokens > 0
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # pypdf's warnings are kept out of user output


def test_empty_password_encryption_is_opened(tmp_path: Path) -> None:
    writer = pypdf.PdfWriter(clone_from=data("pdf-samples", "001-trivial", "minimal-document.pdf"))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    writer.write(tmp_path / "locked.pdf")
    writer = pypdf.PdfWriter(clone_from=data("pdf-samples", "001-trivial", "minimal-document.pdf"))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    writer.write(tmp_path / "secret.pdf")
    docs, report = load(tmp_path / "locked.pdf")
    assert docs and docs[0].page_content.strip() and not report.skipped
    docs, report = load(tmp_path / "secret.pdf")
    assert not docs and report.skipped[0].reason == "encrypted — needs a password"


def test_malformed_files_are_reported_not_raised(tmp_path: Path) -> None:
    original = data("pdf-samples", "004-pdflatex-4-pages", "pdflatex-4-pages.pdf").read_bytes()
    (tmp_path / "truncated.pdf").write_bytes(original[: len(original) // 3])
    (tmp_path / "random.pdf").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "text.pdf").write_text("just text pretending\n")
    for name in ("truncated.pdf", "random.pdf", "text.pdf"):
        docs, report = load(tmp_path / name)
        assert docs or report.skipped, name
        if not docs:
            assert report.skipped[0].reason.startswith("damaged or not a PDF"), report.skipped


def test_one_failing_page_is_skipped_and_the_rest_read(monkeypatch) -> None:
    path = data("pdf-samples", "004-pdflatex-4-pages", "pdflatex-4-pages.pdf")
    real = pypdf.PageObject.extract_text
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyError("/Font")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pypdf.PageObject, "extract_text", flaky)
    docs, report = load(path)
    assert [doc.metadata["page"] for doc in docs] == [1, 3, 4]
    assert [(s.page, s.reason) for s in report.skipped] == [(2, "text extraction failed: KeyError: '/Font'")]


def test_image_only_pages_are_reported_per_page() -> None:
    docs, report = load(data("pdf-samples", "007-imagemagick-images", "imagemagick-images.pdf"))
    assert [doc.metadata["page"] for doc in docs] == [1, 2, 3, 6]
    assert [(s.page, s.reason) for s in report.skipped] == [(4, NO_TEXT_LAYER), (5, NO_TEXT_LAYER)]


def test_a_copied_pdf_is_one_duplicate_entry(tmp_path: Path) -> None:
    source = data("pdf-samples", "004-pdflatex-4-pages", "pdflatex-4-pages.pdf")
    shutil.copy(source, tmp_path / "a.pdf")
    shutil.copy(source, tmp_path / "b.pdf")
    report, _ = ingest_paths([tmp_path], ByteTokenizer())
    assert [(e.path, e.pages) for e in report.documents] == [(str(tmp_path / "a.pdf"), 4)]
    assert [(s.path, s.reason, s.page) for s in report.skipped] == [(str(tmp_path / "b.pdf"), f"duplicate of {tmp_path / 'a.pdf'} (all 4 pages)", None)]


def many_page_pdf(pages: int) -> bytes:
    """A valid PDF of `pages` pages, each saying which page it is (standard font, no images)."""
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"}
    kids = []
    for n in range(pages):
        page, content = 4 + 2 * n, 5 + 2 * n
        stream = b"BT /F1 12 Tf 72 720 Td (This is page %d of a very long report.) Tj ET" % (n + 1)
        objects[content] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
        objects[page] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content
        kids.append(b"%d 0 R" % page)
    objects[2] = b"<< /Type /Pages /Count %d /Kids [%s] >>" % (pages, b" ".join(kids))
    out, offsets = bytearray(b"%PDF-1.4\n"), {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref, size = len(out), max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size + b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


@pytest.mark.slow
def test_ten_thousand_pages_stream_in_bounded_memory(tmp_path: Path) -> None:
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc to read peak memory")
    (tmp_path / "long.pdf").write_bytes(many_page_pdf(10_000))
    code = (
        "import re, sys\nfrom ingest.pipeline import ingest_paths\nfrom ingest.tokenizers import ByteTokenizer\n"
        "report, stream = ingest_paths([sys.argv[1]], ByteTokenizer(), keep_tokens=False)\n"
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "print(report.documents[0].pages, len(report.skipped), peak // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "long.pdf")], cwd=REPO, capture_output=True, text=True, check=True)
    pages, skipped, peak_mb = map(int, result.stdout.split())
    assert (pages, skipped) == (10_000, 0)
    assert peak_mb < 250, f"peak RSS {peak_mb} MB for 10,000 pages"
