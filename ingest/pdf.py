"""PDF files, one Document per page, read page by page with pypdf.

A page that fails to extract, or has no text layer, is reported and skipped; only a file
pypdf cannot open at all (damaged, encrypted with a password) is skipped as a whole. With an
OCR engine (`ingest.ocr`, `rmtqa ingest --ocr`) a page without a text layer is read by OCR
instead, and its Document says so (`ocr: True`).
pypdf is chatty about recoverable problems (fonts, xref tables): its log records go to our
logger at DEBUG level and its `warnings` are silenced, so users see only our skip reasons.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from langchain_core.documents import Document
from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError
from pypdf.generic import ArrayObject, IndirectObject

from ingest.archive import seekable
from ingest.documents import FileLoader, make_document
from ingest.files import FileRef
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.ocr import LazyPdf, PageOcr
from ingest.report import SkipSink
from ingest.text import normalise_newlines

log = logging.getLogger("ingest.pdf")
NO_TEXT_LAYER = "no text layer — scanned?"
NO_TEXT_FOUND = "no text layer, and OCR found no text"


class _ToDebug(logging.Handler):
    """Re-emits pypdf's records at DEBUG level on our logger."""

    def emit(self, record: logging.LogRecord) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("pypdf: %s", record.getMessage())


_pypdf_log = logging.getLogger("pypdf")
_pypdf_log.addHandler(_ToDebug())
_pypdf_log.propagate = False


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class PdfLoader(FileLoader):
    """One Document per page (metadata `page` is 1-based); `pages` limits which are read;
    `ocr` reads the pages that have no text layer."""

    def __init__(self, file: FileRef | str | Path, report: SkipSink | None = None, *, pages: Iterable[int] | None = None,
                 ocr: PageOcr | None = None, limits: Limits = DEFAULT_LIMITS):
        super().__init__(file, report, limits=limits)
        self.pages = pages
        self.ocr = ocr

    def _documents(self) -> Iterator[Document]:
        ref = self.file
        with ref.opener() as handle, LazyPdf(lambda: seekable(ref, self.limits)) as rendered:
            reader = self._open(handle)
            if reader is None:
                return
            count = len(reader.pages)
            numbers = range(1, count + 1) if self.pages is None else [n for n in self.pages if 1 <= n <= count]
            for number in numbers:
                text = self._page_text(reader, number)
                if text:
                    yield make_document(text, source=ref.source, kind="pdf", page=number, line_start=1)
                elif text == "" and (text := self._ocr_text(rendered, number)):
                    yield make_document(text, source=ref.source, kind="pdf", page=number, line_start=1, ocr=True)

    def _open(self, handle) -> PdfReader | None:
        """A reader with its page tree loaded and decrypted, or None after reporting why not."""
        source = self.file.source
        try:
            with _quiet():
                reader = PdfReader(handle, strict=False)
                if reader.is_encrypted and not reader.decrypt(""):
                    self.report.skip(source, "encrypted — needs a password")
                    return None
                len(reader.pages)
        except DependencyError:
            self.report.skip(source, "encrypted with AES — reading it needs the 'cryptography' package")
            return None
        except FileNotDecryptedError:
            self.report.skip(source, "encrypted — needs a password")
            return None
        except Exception as error:  # noqa: BLE001 - pypdf raises many types for broken files
            self.report.skip(source, f"damaged or not a PDF: {_describe(error)}")
            return None
        return reader

    def _page_text(self, reader: PdfReader, number: int) -> str | None:
        """The page's text layer ('' when it has none), or None after reporting a failure."""
        try:
            with _quiet():
                page = reader.pages[number - 1]
                text = page.extract_text()
        except Exception as error:  # noqa: BLE001 - one bad page must not lose the others
            self.report.skip(self.file.source, f"text extraction failed: {_describe(error)}", page=number)
            return None
        _forget_contents(reader, page)
        if not text or not text.strip():
            return ""
        return normalise_newlines(text.replace("\x00", ""))

    def _ocr_text(self, rendered: LazyPdf, number: int) -> str | None:
        """The text OCR reads on a page without a text layer, or None after reporting why not."""
        source = self.file.source
        if self.ocr is None:
            self.report.skip(source, NO_TEXT_LAYER, page=number)
            return None
        try:
            text = self.ocr.pdf_page_text(rendered.document(), number)
        except Exception as error:  # noqa: BLE001 - one page the renderer or engine fails on
            self.report.skip(source, f"OCR failed: {_describe(error)}", page=number)
            return None
        if not text.strip():
            self.report.skip(source, NO_TEXT_FOUND, page=number)
            return None
        return normalise_newlines(text)


def _forget_contents(reader: PdfReader, page) -> None:
    """Drop the page's decoded content streams from pypdf's object cache.

    pypdf keeps every object it has resolved; content streams are per page and never needed
    again, so forgetting them keeps memory flat over a 10,000-page file (fonts stay cached).
    """
    contents = page.get("/Contents")
    refs = contents if isinstance(contents, ArrayObject) else [contents]
    if isinstance(contents, IndirectObject):
        resolved = reader.resolved_objects.get((contents.generation, contents.idnum))
        if isinstance(resolved, ArrayObject):
            refs = [contents, *resolved]
    for ref in refs:
        if isinstance(ref, IndirectObject):
            reader.resolved_objects.pop((ref.generation, ref.idnum), None)


def _describe(error: Exception) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
