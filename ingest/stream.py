"""Documents -> one ordered token stream, fixed-size segments, and provenance for any token.

Choices the rest of rmtqa relies on:

- Separator: when the stream enters a new file it first reads a header line,
  `# File: path/to/x.py` for code and `# Document: path` for everything else. The stream
  stays plain text (no special ids), so it decodes back to readable text.
- Every document ends with a newline (one is added if missing), so pages and blocks never
  run into each other.
- Tokenization is line by line (batched through `encode_batch` when the tokenizer has it):
  no token straddles a line break, so every token belongs to exactly one line of one file.
  For rmtqa's SentencePiece models (newline is its own piece) this gives exactly the ids of
  encoding the whole text; other tokenizers may differ at line starts. `encode_text`
  applies the same rule for anyone who must match the stream (e.g. training).
- Provenance costs two small integer arrays per document (cumulative tokens and characters
  per line), never a Python object per token, and token ids live in one `array('I')`.
- Identical documents (same text, by SHA-256) are read once; later copies are reported as
  skipped "duplicate of X". Repeats inside the file being read are kept: they are that
  file's real content (and text block boundaries are arbitrary).
"""
from __future__ import annotations

import hashlib
import itertools
from array import array
from bisect import bisect_right

from langchain_core.documents import Document

from ingest.records import DocumentRecord
from ingest.report import IngestReport, Skipped, SkipSink
from ingest.tokenizers import batch_encoder

CODE_HEADER = "# File: {source}\n"
DOCUMENT_HEADER = "# Document: {source}\n"
_CARRIED_METADATA = ("title", "section", "ocr")


def split_lines(text: str) -> list[str]:
    """Lines with their newline kept (a missing final newline is added)."""
    lines = text.split("\n")
    last = lines.pop()
    lines = [line + "\n" for line in lines]
    if last:
        lines.append(last + "\n")
    return lines


def encode_text(tokenizer, text: str) -> list[int]:
    """Ids of `text` exactly as the stream tokenizes it (line by line)."""
    return list(itertools.chain.from_iterable(batch_encoder(tokenizer)(split_lines(text))))


class CorpusStream:
    """Turns Documents into one token stream; see the module doc for the conventions.

    `keep_tokens=False` counts tokens without storing them or the per-line arrays (a dry
    run); provenance then resolves to whole documents.
    """

    def __init__(self, tokenizer, *, keep_tokens: bool = True, report: SkipSink | None = None):
        self.tokenizer = tokenizer
        self.report = report if report is not None else IngestReport()
        self.tokens: array | None = array("I") if keep_tokens else None
        self.records: list[DocumentRecord] = []
        self.total = 0
        self._encode = batch_encoder(tokenizer)
        self._starts = array("q")
        self._seen: dict[bytes, tuple[str, int | None]] = {}

    def __len__(self) -> int:
        return self.total

    def add(self, document: Document) -> DocumentRecord | Skipped:
        """Append one document (or report it as a duplicate / empty and skip it)."""
        meta = document.metadata
        source, page, kind = meta["source"], meta.get("page"), meta.get("kind", "text")
        text = document.page_content
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        reason = "no text" if not text.strip() else None
        original = self._seen.get(digest)
        in_same_file = bool(self.records) and self.records[-1].path == source
        if reason is None and original is not None and (original[0] != source or not in_same_file):
            reason = f"duplicate of {original[0]}" + (f" page {original[1]}" if original[1] is not None else "")
        if reason:
            self.report.skip(source, reason, page)
            return Skipped(source, reason, page)

        lines = split_lines(text)
        header = "" if in_same_file else (CODE_HEADER if kind == "code" else DOCUMENT_HEADER).format(source=source)
        ids = self._encode([header, *lines] if header else lines)
        header_tokens = len(ids[0]) if header else 0
        counts = [len(line_ids) for line_ids in ids]
        record = DocumentRecord(
            path=source, page=page, kind=kind, sha256=digest.hex(), tokens=sum(counts),
            char_count=len(text), line_start=meta.get("line_start", 1),
            line_end=meta.get("line_start", 1) + len(lines) - 1, token_start=self.total,
            header_tokens=header_tokens, char_offset=meta.get("char_offset", 0),
            extra={key: meta[key] for key in _CARRIED_METADATA if meta.get(key) is not None},
        )
        if self.tokens is not None:
            for line_ids in ids:
                self.tokens.extend(line_ids)
            line_counts = counts[1:] if header else counts
            record.line_tokens = array("I", itertools.accumulate(line_counts, initial=0))
            record.line_chars = array("I", itertools.accumulate(map(len, lines), initial=0))
        self._seen.setdefault(digest, (source, page))
        self.records.append(record)
        self._starts.append(record.token_start)
        self.total += record.tokens
        return record

    def segments(self, segment_size: int) -> list[tuple[int, int]]:
        """Consecutive `(start, end)` token ranges of `segment_size` (the last may be shorter)."""
        if segment_size <= 0:
            raise ValueError("segment_size must be positive")
        return [(start, min(start + segment_size, self.total)) for start in range(0, self.total, segment_size)]

    def locate(self, index: int) -> dict:
        """Provenance of a single token."""
        return self.provenance(index, index + 1)[0]

    def provenance(self, start: int, end: int) -> list[dict]:
        """Where tokens [start, end) came from: one dict per document they touch, with
        `path`, `page`, `kind`, `lines` (first, last), `chars` (offsets of those lines in the
        file's or page's extracted text), `tokens` (the part of the range in this document)
        and `excerpt` (the decoded tokens, when they are kept and the tokenizer decodes)."""
        if not 0 <= start < end <= self.total:
            raise IndexError(f"token range [{start}, {end}) outside the stream of {self.total} tokens")
        found = []
        index = bisect_right(self._starts, start) - 1
        while index < len(self.records) and self.records[index].token_start < end:
            record = self.records[index]
            first, last = max(start, record.token_start), min(end, record.token_end)
            if last > first:
                found.append(self._describe(record, first, last))
            index += 1
        return found

    def _describe(self, record: DocumentRecord, first: int, last: int) -> dict:
        lines: tuple[int, int] = (record.line_start, record.line_end)
        chars: tuple[int, int] | None = None
        if record.line_tokens is not None and record.line_chars is not None:
            offsets = record.line_tokens
            top = len(offsets) - 2  # index of the last line
            content_first = max(first - record.token_start - record.header_tokens, 0)
            content_last = max(last - 1 - record.token_start - record.header_tokens, 0)
            a = min(bisect_right(offsets, content_first) - 1, top)
            b = min(bisect_right(offsets, content_last) - 1, top)
            lines = (record.line_start + a, record.line_start + b)
            chars = (record.char_offset + record.line_chars[a], record.char_offset + record.line_chars[b + 1])
        excerpt = None
        decode = getattr(self.tokenizer, "decode", None)
        if self.tokens is not None and decode is not None:
            excerpt = decode(self.tokens[first:last].tolist())
        return {
            "path": record.path, "page": record.page, "kind": record.kind, "lines": lines,
            "chars": chars, "tokens": (first, last), "excerpt": excerpt, **record.extra,
        }
