"""HTML to readable text: scripts and styles dropped, blocks on their own lines, <pre> kept.

Parsed incrementally with the standard library's HTMLParser (no dependency, no network), so a
large page streams in blocks like a text file; line numbers are those of the extracted text.
"""
from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from typing import Iterator

from langchain_core.documents import Document

from ingest.documents import FileLoader, make_document
from ingest.files import looks_binary
from ingest.text import TextDecoder, decode_bytes, iter_decoded, iter_line_blocks, strip_gutenberg

SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "math", "iframe", "object"}
PARAGRAPH_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl", "hr",
    "section", "article", "aside", "header", "footer", "nav", "figure", "main", "body",
}
LINE_TAGS = {"br", "div", "li", "tr", "dt", "dd", "caption", "figcaption", "address", "center", "option"}
_SPACES = re.compile(r"\s+")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""")
# Browsers read these labels as Windows-1252, and so do we.
_WINDOWS_1252_LABELS = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "us-ascii", "ascii", "windows-1252", "cp1252"}


class TextExtractor(HTMLParser):
    """Collects the visible text of HTML fed to it; `take()` hands over what is ready."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._parts: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._in_title = False
        self._newlines = 2  # trailing newlines emitted so far; 2 at the start = no leading blanks

    def take(self) -> str:
        text = "".join(self._parts)
        self._parts.clear()
        return text

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in SKIP_TAGS:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "pre":
            self._break(2)
            self._pre_depth += 1
        elif tag in PARAGRAPH_TAGS:
            self._break(2)
        elif tag in LINE_TAGS:
            self._break(1)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in ("br", "hr"):
            self._break(1 if tag == "br" else 2)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
            self.title = " ".join(self.title.split())
        elif tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
            self._break(2)
        elif tag in PARAGRAPH_TAGS:
            self._break(2)
        elif tag in LINE_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self.title += data
            return
        if not self._pre_depth:
            data = _SPACES.sub(" ", data)
            if self._newlines or (self._parts and self._parts[-1].endswith(" ")):
                data = data.lstrip(" ")
        if data:
            self._parts.append(data)
            stripped = data.rstrip("\n")
            self._newlines = len(data) - len(stripped) if stripped else self._newlines + len(data)

    def _break(self, newlines: int) -> None:
        """End the current line, leaving at most one blank line."""
        if self._newlines >= newlines:
            return
        if self._parts and not self._pre_depth:
            self._parts[-1] = self._parts[-1].rstrip(" ")
        self._parts.append("\n" * (newlines - self._newlines))
        self._newlines = newlines


def declared_encoding(head: bytes) -> str | None:
    """The charset a page declares (meta tag or XML declaration), if Python knows it."""
    match = _CHARSET.search(head[:4096]) or _XML_ENCODING.search(head[:200])
    if not match:
        return None
    label = match.group(1).decode("ascii").lower()
    if label in _WINDOWS_1252_LABELS:
        return "cp1252"
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return None if name == "utf-8" else name  # UTF-8 pages get detection, which also tolerates liars


def html_to_text(data: bytes) -> tuple[str, str]:
    """(text, title) of a whole small HTML document (an EPUB chapter)."""
    text, _ = decode_bytes(data, declared_encoding(data))
    parser = TextExtractor()
    parser.feed(text)
    parser.close()
    return parser.take(), parser.title


class HtmlLoader(FileLoader):
    """An HTML page as blocks of extracted text (Project Gutenberg boilerplate removed)."""

    def _documents(self) -> Iterator[Document]:
        ref = self.file
        head = ref.head()
        if looks_binary(head):
            self.report.skip(ref.source, "binary file (not HTML)")
            return
        parser = TextExtractor()
        decoders: list[TextDecoder] = []
        found = False
        with ref.opener() as handle:

            def pieces() -> Iterator[str]:
                for piece in iter_decoded(handle, decoders, declared_encoding(head)):
                    parser.feed(piece)
                    yield parser.take()
                parser.close()
                yield parser.take()

            blocks = strip_gutenberg(iter_line_blocks(pieces(), self.limits.text_block_chars))
            for block, line, offset in blocks:
                if not block.strip():
                    continue
                found = True
                yield make_document(
                    block, source=ref.source, kind="html", line_start=line, char_offset=offset,
                    title=parser.title or None, encoding=decoders[0].encoding,
                )
        if not found:
            self.report.skip(ref.source, "empty file" if ref.size == 0 else "no visible text in the HTML")
