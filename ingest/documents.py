"""The `Document` every loader yields, and the metadata keys the rest of rmtqa relies on.

Metadata:
- `source`: display path; inside an archive `archive.zip/inner/path`.
- `page`: 1-based page number for PDF pages, else None.
- `line_start`: 1-based line of the document's first line within its file (or, for PDF
  pages, within the page's extracted text; for HTML/EPUB, within the extracted text; for
  Word documents, the paragraph or table row), so that a text file read in blocks keeps its
  real line numbers.
- `kind`: "pdf", "text", "html", "epub", "docx" or "code".
- `ocr`: True on a PDF page whose text was read by OCR (it had no text layer).
Loaders may add more keys (e.g. `title`, `section`, `char_offset`); the stream carries
`title`, `section` and `ocr` into provenance.

Every loader is a `FileLoader`: it reads one file (on disk or inside an archive), yields
Documents lazily and reports what it cannot read to a `SkipSink` instead of raising.
"""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Iterator

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from ingest.files import FileRef, as_file_ref
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.report import IngestReport, SkipSink

KINDS = ("pdf", "text", "html", "epub", "docx", "code")


def make_document(text: str, *, source: str, kind: str, page: int | None = None, line_start: int = 1, **extra) -> Document:
    """A Document with the metadata contract above filled in."""
    assert kind in KINDS, kind
    metadata = {"source": source, "page": page, "line_start": line_start, "kind": kind, **extra}
    return Document(page_content=text, metadata=metadata)


def guarded(documents: Iterator[Document], report: SkipSink, source: str) -> Iterator[Document]:
    """`documents`, with any exception turned into a skip of `source` (what was already
    yielded stays yielded): the promise that no traceback reaches the user."""
    given = 0
    try:
        for document in documents:
            given += 1
            yield document
    except Exception as error:  # noqa: BLE001 - that is the point
        prefix = "stopped part-way" if given else "could not read"
        report.skip(source, f"{prefix}: {type(error).__name__}: {error}")


class FileLoader(BaseLoader):
    """A langchain loader for one file; skips go to `report` (default: a fresh IngestReport)."""

    def __init__(self, file: FileRef | str | Path, report: SkipSink | None = None, *, limits: Limits = DEFAULT_LIMITS):
        self.file = as_file_ref(file)
        self.report = report if report is not None else IngestReport()
        self.limits = limits

    def lazy_load(self) -> Iterator[Document]:
        return guarded(self._documents(), self.report, self.file.source)

    @abstractmethod
    def _documents(self) -> Iterator[Document]:
        """The file's documents; each concrete loader (PDF, text, HTML, EPUB, Word) defines this."""
