"""Plain text and source code: encoding detection, newline normalisation, bounded blocks.

A file is decoded incrementally and cut into blocks of whole lines, so a 1 GB file never sits
in memory and every block knows the file line it starts on. Encodings (no dependency needed):
a byte-order mark decides; otherwise UTF-8 until a byte proves otherwise, then CP1252 (with
Latin-1 for the five bytes CP1252 leaves undefined) -- switching is exact as long as
everything before was ASCII, which is the common case for Latin-1 books.
"""
from __future__ import annotations

import codecs
import itertools
import re
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from langchain_core.documents import Document

from ingest.documents import FileLoader, make_document
from ingest.files import FileRef, looks_binary
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.report import SkipSink

READ_BYTES = 256 * 1024
_BOMS = (  # longest first: the UTF-32-LE mark starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _latin1_fallback(error: UnicodeDecodeError) -> tuple[str, int]:
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("ingest-latin1", _latin1_fallback)


def detect_bom(head: bytes) -> tuple[str | None, int]:
    """(encoding, BOM length) from a byte-order mark, or (None, 0)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    return None, 0


class TextDecoder:
    """Incremental bytes -> str that settles the encoding as it reads (see module doc).

    With a known `encoding` (from a BOM or an HTML declaration) it just decodes, replacing
    invalid bytes.
    """

    def __init__(self, encoding: str | None = None):
        self._tentative = encoding is None
        self.encoding = encoding or "utf-8"
        errors = "strict" if self._tentative else "ingest-latin1" if self.encoding == "cp1252" else "replace"
        self._decoder = codecs.getincrementaldecoder(self.encoding)(errors)
        self._seen_non_ascii = False

    def decode(self, data: bytes, final: bool = False) -> str:
        if not self._tentative:
            return self._decoder.decode(data, final)
        pending = self._decoder.getstate()[0] + data
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as error:
            self._tentative = False
            if self._seen_non_ascii or not pending[: error.start].isascii():
                self.encoding = "utf-8 (invalid bytes replaced)"
                self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
            else:
                self.encoding = "cp1252"
                self._decoder = codecs.getincrementaldecoder("cp1252")("ingest-latin1")
            return self._decoder.decode(pending, final)
        self._seen_non_ascii = self._seen_non_ascii or not text.isascii()
        return text


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """(text, encoding) for a whole small file, with newlines normalised to \\n."""
    encoding, skip = detect_bom(data[:4])
    decoder = TextDecoder(encoding or declared)
    text = decoder.decode(data[skip:], final=True)
    return normalise_newlines(text), decoder.encoding


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def iter_decoded(handle: BinaryIO, decoder_out: list[TextDecoder] | None = None, declared: str | None = None) -> Iterator[str]:
    """Decoded text of a binary stream in pieces, newlines normalised (a CRLF split across
    two reads stays one newline). A BOM beats `declared`, which beats detection; the decoder
    in use is appended to `decoder_out` (its `encoding` may settle while reading)."""
    first = handle.read(READ_BYTES)
    encoding, skip = detect_bom(first[:4])
    decoder = TextDecoder(encoding or declared)
    if decoder_out is not None:
        decoder_out.append(decoder)
    carry_cr = False
    data = first[skip:]
    while data:
        text = ("\r" if carry_cr else "") + decoder.decode(data)
        carry_cr = text.endswith("\r")
        yield normalise_newlines(text[:-1] if carry_cr else text)
        data = handle.read(READ_BYTES)
    yield normalise_newlines(("\r" if carry_cr else "") + decoder.decode(b"", final=True))


def iter_line_blocks(pieces: Iterable[str], block_chars: int) -> Iterator[tuple[str, int, int]]:
    """(block, first line number, char offset) with blocks of whole lines up to `block_chars`.

    Only a single line longer than `block_chars` is cut mid-line (the next block then starts
    on that same line number).
    """
    buffer, line, offset = "", 1, 0
    for piece in pieces:
        buffer += piece
        while len(buffer) >= block_chars:
            cut = buffer.rfind("\n", 0, block_chars) + 1 or block_chars
            block, buffer = buffer[:cut], buffer[cut:]
            yield block, line, offset
            line += block.count("\n")
            offset += len(block)
    if buffer:
        yield buffer, line, offset


_GUTENBERG_START = re.compile(r"^\*{3} ?START OF (THIS|THE) PROJECT GUTENBERG[^\n]*\n?", re.I | re.M)
_GUTENBERG_END = re.compile(r"^\*{3} ?END OF (THIS|THE) PROJECT GUTENBERG", re.I | re.M)
_GUTENBERG_END_LINE = re.compile(r"^End of (the )?Project Gutenberg", re.I | re.M)
GUTENBERG_HEADER_CHARS = 20_000


def strip_gutenberg(blocks: Iterable[tuple[str, int, int]]) -> Iterator[tuple[str, int, int]]:
    """Drop a Project Gutenberg licence header and footer, keeping the book's line numbers.

    Only a file whose first block has the START marker near its top is touched.
    """
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None:
        return
    block, line, offset = first
    start = _GUTENBERG_START.search(block, 0, GUTENBERG_HEADER_CHARS)
    if start is None:
        yield first
        yield from blocks
        return
    head = block[: start.end()]
    block, line, offset = block[start.end() :], line + head.count("\n"), offset + len(head)
    for current in itertools.chain([(block, line, offset)], blocks):
        text = current[0]
        end = _GUTENBERG_END.search(text)
        if end is None:
            yield current
            continue
        text = text[: end.start()]
        tail = _GUTENBERG_END_LINE.search(text, max(0, len(text) - 1000))
        if tail is not None:
            text = text[: tail.start()]
        yield text, current[1], current[2]
        return


class TextLoader(FileLoader):
    """Plain text or source code, as blocks of whole lines with their real line numbers.

    `kind="text"` also removes Project Gutenberg headers and footers; `kind="code"` keeps
    the file exactly as it is (apart from newline normalisation).
    """

    def __init__(self, file: FileRef | str | Path, report: SkipSink | None = None, *, kind: str = "text", limits: Limits = DEFAULT_LIMITS):
        super().__init__(file, report, limits=limits)
        self.kind = kind

    def _documents(self) -> Iterator[Document]:
        ref = self.file
        if looks_binary(ref.head()):
            self.report.skip(ref.source, "binary file (not text)")
            return
        decoders: list[TextDecoder] = []
        found = False
        with ref.opener() as handle:
            blocks = iter_line_blocks(iter_decoded(handle, decoders), self.limits.text_block_chars)
            if self.kind == "text":
                blocks = strip_gutenberg(blocks)
            for block, line, offset in blocks:
                if not block.strip():
                    continue
                found = True
                yield make_document(
                    block, source=ref.source, kind=self.kind, line_start=line, char_offset=offset, encoding=decoders[0].encoding
                )
        if not found:
            self.report.skip(ref.source, "empty file" if ref.size == 0 else "no text (only whitespace)")
