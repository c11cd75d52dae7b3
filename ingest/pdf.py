"""PDF files, one Document per page, read page by page with pypdf.

A page that fails to extract, or has no text layer, is reported and skipped; only a file
pypdf cannot open at all (damaged, encrypted with a password) is skipped as a whole.
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

from ingest.documents import FileLoader, make_document
from ingest.files import FileRef
from ingest.report import SkipSink
from ingest.text import normalise_newlines

log = logging.getLogger("ingest.pdf")
NO_TEXT_LAYER = "no text layer — scanned?"


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
    """One Document per page (metadata `page` is 1-based); `pages` limits which are read."""

    def __init__(self, file: FileRef | str | Path, report: SkipSink | None = None, *, pages: Iterable[int] | None = None):
        super().__init__(file, report)
        self.pages = pages

    def _documents(self) -> Iterator[Document]:
        ref = self.file
        with ref.opener() as handle:
            reader = self._open(handle)
            if reader is None:
                return
            count = len(reader.pages)
            numbers = range(1, count + 1) if self.pages is None else [n for n in self.pages if 1 <= n <= count]
            for number in numbers:
                text = self._page_text(reader, number)
                if text is not None:
                    yield make_document(text, source=ref.source, kind="pdf", page=number, line_start=1)

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
        try:
            with _quiet():
                page = reader.pages[number - 1]
                text = page.extract_text()
        except Exception as error:  # noqa: BLE001 - one bad page must not lose the others
            self.report.skip(self.file.source, f"text extraction failed: {_describe(error)}", page=number)
            return None
        _forget_contents(reader, page)
        if not text or not text.strip():
            self.report.skip(self.file.source, NO_TEXT_LAYER, page=number)
            return None
        return normalise_newlines(text.replace("\x00", ""))


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
