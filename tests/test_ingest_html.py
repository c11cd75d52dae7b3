"""HTML pages and EPUB books."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ingest.epub import EpubLoader
from ingest.html import HtmlLoader, html_to_text
from ingest.limits import Limits
from ingest.report import IngestReport

BOOKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "books"

CONTAINER = b"""<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>"""
OPF = b"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>A Test Book</dc:title></metadata>
  <manifest>
    <item id="a" href="text/a%20first.xhtml" media-type="application/xhtml+xml"/>
    <item id="b" href="text/b.xhtml" media-type="application/xhtml+xml"/>
    <item id="cover" href="cover.xhtml" media-type="application/xhtml+xml"/>
    <item id="gone" href="text/missing.xhtml" media-type="application/xhtml+xml"/>
  </manifest>
  <spine><itemref idref="cover"/><itemref idref="b"/><itemref idref="a"/><itemref idref="gone"/></spine>
</package>"""


def chapter(title: str, body: str) -> bytes:
    return f'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title><style>p {{color: red}}</style></head><body>{body}</body></html>'.encode()


def make_epub(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr("META-INF/container.xml", CONTAINER)
        book.writestr("OEBPS/content.opf", OPF)
        book.writestr("OEBPS/cover.xhtml", chapter("Cover", '<img src="cover.png"/>'))
        book.writestr("OEBPS/text/a first.xhtml", chapter("One", "<h1>Chapter One</h1><p>It was a dark night.</p>"))
        book.writestr("OEBPS/text/b.xhtml", chapter("Two", "<h1>Preface</h1><p>Read me first.</p><script>alert(1)</script>"))
        for name, data in (extra or {}).items():
            book.writestr(name, data)
    return path


def test_html_strips_scripts_and_styles_keeps_structure() -> None:
    html = (
        b"<html><head><title> The  Title </title><style>body{}</style><script>var x = '<p>';</script></head>"
        b"<body><h1>Heading</h1><p>First   paragraph\nwraps.</p><noscript>no</noscript>"
        b"<ul><li>one</li><li>two &amp; three</li></ul><pre>  code\n    indented</pre>Tail<br>line</body></html>"
    )
    text, title = html_to_text(html)
    assert title == "The Title"
    assert text == "Heading\n\nFirst paragraph wraps.\n\none\ntwo & three\n\n  code\n    indented\n\nTail\nline\n\n"


def test_html_encodings() -> None:
    assert html_to_text('<meta charset="iso-8859-1"><p>caf\xe9</p>'.encode("latin-1"))[0] == "café\n\n"
    assert html_to_text("<p>café</p>".encode())[0] == "café\n\n"


def test_gutenberg_html_book() -> None:
    if not BOOKS.is_dir():
        pytest.skip("shared data not available")
    report = IngestReport()
    docs = HtmlLoader(BOOKS / "pride-and-prejudice.html", report, limits=Limits(text_block_chars=200_000)).load()
    text = "".join(doc.page_content for doc in docs)
    assert len(docs) > 2 and not report.skipped
    assert "It is a truth universally acknowledged" in text and "P { text-indent" not in text
    assert "START OF THIS PROJECT GUTENBERG" not in text and "END OF THIS PROJECT GUTENBERG" not in text
    assert docs[0].metadata["title"] == "Pride and Prejudice, by Jane Austen" and docs[0].metadata["kind"] == "html"
    for before, after in zip(docs, docs[1:]):
        assert after.metadata["line_start"] == before.metadata["line_start"] + before.page_content.count("\n")


def test_epub_reads_spine_order_from_the_zip(tmp_path: Path) -> None:
    report = IngestReport()
    docs = EpubLoader(make_epub(tmp_path / "book.epub"), report).load()
    assert [doc.metadata["section"] for doc in docs] == ["OEBPS/text/b.xhtml", "OEBPS/text/a first.xhtml"]
    assert docs[0].page_content == "Preface\n\nRead me first.\n\n" and docs[1].page_content.startswith("Chapter One")
    assert docs[0].metadata["title"] == "A Test Book" and docs[0].metadata["kind"] == "epub"
    assert docs[1].metadata["line_start"] == 1 + docs[0].page_content.count("\n")
    assert [(s.path, s.reason) for s in report.skipped] == [
        (f"{tmp_path / 'book.epub'}/OEBPS/text/missing.xhtml", "chapter listed in the EPUB's spine is missing")
    ]


def test_broken_and_drm_epubs(tmp_path: Path) -> None:
    (tmp_path / "junk.epub").write_bytes(b"not a zip at all")
    with zipfile.ZipFile(tmp_path / "nocontainer.epub", "w") as book:
        book.writestr("mimetype", "application/epub+zip")
    encryption = b"""<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
      <enc:EncryptedData><enc:CipherData><enc:CipherReference URI="OEBPS/text/a%20first.xhtml"/></enc:CipherData></enc:EncryptedData>
      <enc:EncryptedData><enc:CipherData><enc:CipherReference URI="OEBPS/text/b.xhtml"/></enc:CipherData></enc:EncryptedData>
      <enc:EncryptedData><enc:CipherData><enc:CipherReference URI="OEBPS/cover.xhtml"/></enc:CipherData></enc:EncryptedData>
      <enc:EncryptedData><enc:CipherData><enc:CipherReference URI="OEBPS/text/missing.xhtml"/></enc:CipherData></enc:EncryptedData>
    </encryption>"""
    make_epub(tmp_path / "drm.epub", {"META-INF/encryption.xml": encryption})
    reasons = {}
    for name in ("junk.epub", "nocontainer.epub", "drm.epub"):
        report = IngestReport()
        assert EpubLoader(tmp_path / name, report).load() == []
        reasons[name] = report.skipped[0].reason
    assert reasons["junk.epub"].startswith("damaged or not a zip archive")
    assert reasons["nocontainer.epub"].startswith("not a valid EPUB")
    assert reasons["drm.epub"] == "EPUB is DRM-encrypted"
