"""Word documents: paragraphs and tables in order, heading paths, hostile files skipped."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import docx
import pytest

from app.cli.main import main
from app.cli.commands import ingest as command
from ingest.limits import Limits
from ingest.pipeline import ingest_paths
from ingest.report import IngestReport
from ingest.tokenizers import ByteTokenizer
from ingest.word import DocxLoader


def make_lease(path: Path) -> Path:
    """A title, two heading levels, paragraphs (one with a soft line break, one empty) and a table."""
    document = docx.Document()
    document.core_properties.title = "Lease"
    document.add_heading("Lease agreement", 0)
    document.add_paragraph("This lease is made between Ann and Bob.")
    document.add_heading("1 Terms", 1)
    document.add_paragraph("The rent is 900 euros\nper month.")
    table = document.add_table(rows=2, cols=3)
    for row, values in enumerate([("Item", "Price", "Due"), ("Rent", "900", "monthly")]):
        for column, value in enumerate(values):
            table.cell(row, column).text = value
    document.add_heading("1.1 Payment", 2)
    document.add_paragraph("")
    document.add_paragraph("Pay by the third of the month.")
    document.add_heading("2 Ending", 1)
    document.add_paragraph("Three months notice.")
    document.save(path)
    return path


def rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the zip `source` with some members' bytes replaced (or added)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, replace.pop(info.filename, old.read(info)))
        for name, data in replace.items():
            new.writestr(name, data)
    return target


def load(path: Path, limits: Limits = Limits()) -> tuple[list, IngestReport]:
    report = IngestReport()
    return list(DocxLoader(path, report, limits=limits).lazy_load()), report


def test_paragraphs_and_tables_in_order_with_heading_paths(tmp_path: Path) -> None:
    documents, report = load(make_lease(tmp_path / "lease.docx"))
    assert report.skipped == []
    text = "".join(document.page_content for document in documents)
    assert text.splitlines() == [
        "Lease agreement", "This lease is made between Ann and Bob.",
        "1 Terms", "The rent is 900 euros per month.", "Item | Price | Due", "Rent | 900 | monthly",
        "1.1 Payment", "Pay by the third of the month.",
        "2 Ending", "Three months notice.",
    ]
    sections = [(d.metadata["section"], d.metadata["line_start"]) for d in documents]
    assert sections == [
        ("Lease agreement", 1), ("Lease agreement > 1 Terms", 3),
        ("Lease agreement > 1 Terms > 1.1 Payment", 7), ("Lease agreement > 2 Ending", 9),
    ]
    assert {(d.metadata["kind"], d.metadata["title"]) for d in documents} == {("docx", "Lease")}
    offsets = [d.metadata["char_offset"] for d in documents]
    assert offsets == [text.index(d.page_content) for d in documents]


def test_provenance_names_the_paragraph_and_the_heading_path(tmp_path: Path) -> None:
    lease = make_lease(tmp_path / "lease.docx")
    report, stream = ingest_paths([lease], ByteTokenizer())
    assert [entry.kind for entry in report.documents] == ["docx"] and report.skipped == []
    record, section = stream.records[1], load(lease)[0][1]  # "1 Terms", its table inside
    offset = section.page_content.index("Rent | 900")  # ByteTokenizer: one token per byte
    source = stream.locate(record.token_start + record.header_tokens + offset)
    assert source["lines"] == (6, 6) and source["section"] == "Lease agreement > 1 Terms"


def test_tracked_insertions_and_content_controls_are_read(tmp_path: Path) -> None:
    body = (b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
            b'<w:sdt><w:sdtContent><w:p><w:r><w:t>Inside a control.</w:t></w:r></w:p></w:sdtContent></w:sdt>'
            b'<w:p><w:r><w:t xml:space="preserve">Kept </w:t></w:r><w:del><w:r><w:delText>gone </w:delText></w:r></w:del>'
            b'<w:ins><w:r><w:t>inserted.</w:t></w:r></w:ins></w:p></w:body></w:document>')
    base = make_lease(tmp_path / "base.docx")
    documents, report = load(rewrite(base, tmp_path / "tracked.docx", {"word/document.xml": body}))
    assert report.skipped == []
    assert [d.page_content for d in documents] == ["Inside a control.\nKept inserted.\n"]


def test_long_stretches_without_headings_are_cut_into_blocks(tmp_path: Path) -> None:
    document = docx.Document()
    for number in range(50):
        document.add_paragraph(f"Paragraph {number} " + "word " * 20)
    document.save(tmp_path / "plain.docx")
    documents, _ = load(tmp_path / "plain.docx", Limits(text_block_chars=1000))
    assert len(documents) > 3
    assert [d.metadata["line_start"] for d in documents][:2] == [1, 1 + documents[0].page_content.count("\n")]
    assert "".join(d.page_content for d in documents).count("\n") == 50


def test_hostile_word_files_are_skipped_with_one_line(tmp_path: Path) -> None:
    lease = make_lease(tmp_path / "lease.docx")
    rewrite(lease, tmp_path / "broken-xml.docx", {"word/document.xml": b"<w:document><w:body><w:p>"})
    rewrite(lease, tmp_path / "bomb.docx", {"word/media/padding.bin": bytes(4 * 1024 * 1024)})
    rewrite(lease, tmp_path / "spreadsheet.docx", {"[Content_Types].xml": b"<Types/>"})
    (tmp_path / "not-a-zip.docx").write_bytes(b"plain text, not a zip\n" * 20)
    (tmp_path / "protected.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    report, stream = ingest_paths([tmp_path], ByteTokenizer())
    assert [entry.path for entry in report.documents] == [f"{tmp_path}/lease.docx"] and len(stream) > 0
    reasons = {Path(item.path).name: item.reason for item in report.skipped}
    assert set(reasons) == {"broken-xml.docx", "bomb.docx", "spreadsheet.docx", "not-a-zip.docx", "protected.docx"}
    assert reasons["broken-xml.docx"].startswith("damaged Word document: XMLSyntaxError")
    assert reasons["bomb.docx"].startswith("refused: 'word/media/padding.bin' expands to 4.0 MiB") and "zip bomb?" in reasons["bomb.docx"]
    assert reasons["not-a-zip.docx"] == "damaged or not a .docx (not a zip: File is not a zip file)"
    assert reasons["protected.docx"].startswith("not a .docx: password-protected")
    assert all("\n" not in reason and "Traceback" not in reason for reason in reasons.values())


def test_a_document_expanding_past_the_cap_is_skipped(tmp_path: Path) -> None:
    documents, report = load(make_lease(tmp_path / "lease.docx"), Limits(max_docx_bytes=10_000))
    assert documents == [] and report.skipped[0].reason.startswith("too large to read: expands to")


def test_a_word_document_inside_a_zip_is_read(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "letters.zip", "w") as archive:
        archive.write(make_lease(tmp_path / "lease.docx"), "2024/lease.docx")
    report, _ = ingest_paths([tmp_path / "letters.zip"], ByteTokenizer())
    assert [entry.path for entry in report.documents] == [f"{tmp_path}/letters.zip/2024/lease.docx"]


def test_dry_run_json_counts_the_tokens_of_a_word_document(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(command, "default_model_dir", lambda: tmp_path / "no-model")
    folder = tmp_path / "docs"
    folder.mkdir()
    make_lease(folder / "lease.docx")
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 truncated")
    assert main(["ingest", str(folder), "--dry-run", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert [(d["path"], d["kind"]) for d in report["documents"]] == [(f"{folder}/lease.docx", "docx")]
    assert report["documents"][0]["tokens"] > 0 and report["tokens"] > 0
    assert [item["path"] for item in report["skipped"]] == [f"{folder}/broken.docx"] and err == ""


@pytest.mark.parametrize("suffix", [".DOCX", ".docx"])
def test_the_suffix_is_matched_in_any_case(tmp_path: Path, suffix: str) -> None:
    path = make_lease(tmp_path / f"lease{suffix}")
    report, _ = ingest_paths([path], ByteTokenizer())
    assert [entry.kind for entry in report.documents] == ["docx"]
