"""Word documents (.docx) through python-docx: paragraphs and tables in reading order.

Every paragraph with text is one line of the extracted text (its soft line breaks become
spaces), and every table row is one line with its cells joined by " | ", so the lines a
source cites are the document's paragraphs and rows, counted from 1. Each heading starts a
new Document whose `section` is its heading path ("Contract > 2 Terms > 2.1 Payment"); long
stretches without a heading are cut into blocks like a text file's.

A .docx is a zip of XML parts that python-docx reads into memory whole, so it passes the
archive's zip-bomb checks first and must expand to under `Limits.max_docx_bytes`; XML is
parsed by lxml without entity expansion (python-docx's parser). Content python-docx does not
model as body text (headers, footers, footnotes, comments, text boxes) is not read.
"""
from __future__ import annotations

import zipfile
from typing import Iterator

import docx as python_docx
from docx.document import Document as WordDocument
from docx.oxml.ns import qn
from docx.text.run import Run
from langchain_core.documents import Document

from ingest.archive import refusal_reason, seekable
from ingest.documents import FileLoader, make_document
from ingest.limits import human_bytes

# Password-protected Word files (and old binary .doc files) are OLE compound files, not zips.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PARAGRAPH, TABLE, ROW, CELL, RUN = (qn(tag) for tag in ("w:p", "w:tbl", "w:tr", "w:tc", "w:r"))
# Elements that only wrap runs or blocks (tracked insertions, links, content controls, fields):
# their text is the document's text. Deletions (w:del) are left out.
WRAPPERS = {qn(tag) for tag in ("w:ins", "w:moveTo", "w:hyperlink", "w:smartTag", "w:customXml", "w:sdt",
                                "w:sdtContent", "w:fldSimple")}
HEADING_PREFIX = "heading "


class DocxLoader(FileLoader):
    """One Document per heading section (`section`: the heading path; `title`: the
    document's title property); `line_start` counts paragraphs and table rows."""

    def _documents(self) -> Iterator[Document]:
        document = self._open()
        if document is None:
            return
        ref, block_chars = self.file, self.limits.text_block_chars
        title = (document.core_properties.title or "").strip() or None
        levels = heading_levels(document)
        headings: list[tuple[int, str]] = []
        lines: list[str] = []
        line, offset, size = 1, 0, 0

        def flush() -> Document:
            nonlocal line, offset, size
            text = "\n".join(lines) + "\n"
            section = " > ".join(heading for _, heading in headings) or None
            piece = make_document(text, source=ref.source, kind="docx", line_start=line, char_offset=offset,
                                  section=section, title=title)
            line, offset, size = line + len(lines), offset + len(text), 0
            lines.clear()
            return piece

        for text, level in body_lines(document.element.body, levels):
            if (level is not None or size >= block_chars) and lines:
                yield flush()
            if level is not None:
                while headings and headings[-1][0] >= level:
                    headings.pop()
                headings.append((level, text))
            lines.append(text)
            size += len(text) + 1
        if lines:
            yield flush()
        elif line == 1:
            self.report.skip(ref.source, "no text in the Word document")

    def _open(self) -> WordDocument | None:
        """The parsed document, or None after reporting why it cannot be read."""
        ref = self.file
        if ref.head(len(OLE_MAGIC)) == OLE_MAGIC:
            self.report.skip(ref.source, "not a .docx: password-protected, or an old .doc renamed (OLE file)")
            return None
        try:
            handle = seekable(ref, self.limits)
        except ValueError as error:
            self.report.skip(ref.source, str(error))
            return None
        with handle:
            try:
                infos = zipfile.ZipFile(handle).infolist()
            except Exception as error:  # noqa: BLE001 - BadZipFile, OSError, ValueError, ...
                self.report.skip(ref.source, f"damaged or not a .docx (not a zip: {error})")
                return None
            reason = refusal_reason(infos, self.limits, ref.size)
            expanded = sum(info.file_size for info in infos)
            if reason is None and expanded > self.limits.max_docx_bytes:
                reason = f"too large to read: expands to {human_bytes(expanded)} (limit {human_bytes(self.limits.max_docx_bytes)})"
            if reason:
                self.report.skip(ref.source, reason)
                return None
            handle.seek(0)
            try:
                return python_docx.Document(handle)
            except Exception as error:  # noqa: BLE001 - broken XML, missing parts, not a Word package
                self.report.skip(ref.source, f"damaged Word document: {type(error).__name__}: {' '.join(str(error).split())}")
                return None


def heading_levels(document: WordDocument) -> dict[str, int]:
    """Paragraph style id -> heading level: "Title" is 0, "Heading N" is N."""
    levels = {}
    for style in document.styles:
        name = (style.name or "").lower()
        if name == "title":
            levels[style.style_id] = 0
        elif name.startswith(HEADING_PREFIX) and name[len(HEADING_PREFIX):].isdigit():
            levels[style.style_id] = int(name[len(HEADING_PREFIX):])
    return levels


def body_lines(container, levels: dict[str, int]) -> Iterator[tuple[str, int | None]]:
    """(line, heading level or None) for each paragraph with text and each table row with
    text under `container` (the body, or a content control), in reading order."""
    for element in blocks(container):
        if element.tag == TABLE:
            yield from ((row, None) for row in table_rows(element))
        elif text := paragraph_text(element):
            yield text, levels.get(element.style) if element.style else None


def blocks(container) -> Iterator:
    """The paragraph and table elements of a body or cell, content controls looked into."""
    for child in container.iterchildren():
        if child.tag in (PARAGRAPH, TABLE):
            yield child
        elif child.tag in WRAPPERS:
            yield from blocks(child)


def paragraph_text(paragraph) -> str:
    """The paragraph's text on one line (tracked insertions in, deletions out)."""
    return " ".join("".join(_run_texts(paragraph)).split())


def _run_texts(element) -> Iterator[str]:
    for child in element.iterchildren():
        if child.tag == RUN:
            yield Run(child, None).text
        elif child.tag in WRAPPERS:
            yield from _run_texts(child)


def table_rows(table) -> Iterator[str]:
    """Each row with text as one line, cells joined by " | " (empty cells kept in place)."""
    for row in table.iterchildren(ROW):
        cells = [cell_text(cell) for cell in row.iterchildren(CELL)]
        if any(cells):
            yield " | ".join(cells)


def cell_text(cell) -> str:
    """A cell's paragraphs and nested tables on one line."""
    parts = [paragraph_text(element) if element.tag == PARAGRAPH else "; ".join(table_rows(element))
             for element in blocks(cell)]
    return " ".join(part for part in parts if part)
