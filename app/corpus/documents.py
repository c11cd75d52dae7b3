"""Where each token of a corpus came from: its documents' records and per-line token counts."""
from __future__ import annotations

import bisect
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from safetensors import safe_open

from app.corpus.errors import CorpusError
from ingest.headings import DocumentSpan


class DocumentIndex:
    """The records of a corpus's token stream and the provenance of any token range.

    Same conventions as `ingest.stream.CorpusStream.provenance` (which needs the live stream):
    a document's tokens start with its header (if any), then its lines; `lines` are 1-based
    file (or page) lines, `page` is set for PDF pages.
    """

    def __init__(self, records: list[dict], files: list[dict], skipped: list[dict], line_tokens: np.ndarray, line_chars: np.ndarray, offsets: np.ndarray):
        self.records, self.files, self.skipped = records, files, skipped
        self.starts = [record["token_start"] for record in records]
        self.line_tokens, self.line_chars, self.offsets = line_tokens, line_chars, offsets
        self.total = records[-1]["token_start"] + records[-1]["tokens"] if records else 0

    @classmethod
    def load(cls, directory: Path, documents_file: str, lines_file: str) -> "DocumentIndex":
        data = json.loads((directory / documents_file).read_text())
        with safe_open(str(directory / lines_file), "np") as handle:
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}
        return cls(data["records"], data["files"], data["skipped"], arrays["line_tokens"], arrays["line_chars"], arrays["offsets"])

    def record_at(self, token: int) -> int:
        return max(bisect.bisect_right(self.starts, token) - 1, 0)

    def boundaries(self, start: int, end: int) -> list[int]:
        """Token positions strictly inside (start, end) where a document begins."""
        index = bisect.bisect_right(self.starts, start)
        found = []
        while index < len(self.starts) and self.starts[index] < end:
            found.append(self.starts[index])
            index += 1
        return found

    def provenance(self, start: int, end: int) -> list[dict]:
        """One dict per document that tokens [start, end) touch: path, page, kind, lines
        (first, last), chars (offsets in the file's or page's text), tokens (first, end)."""
        found = []
        index = self.record_at(start)
        while index < len(self.records) and self.records[index]["token_start"] < end:
            record = self.records[index]
            first = max(start, record["token_start"])
            last = min(end, record["token_start"] + record["tokens"])
            if last > first:
                found.append(self._describe(index, first, last))
            index += 1
        return found

    def _describe(self, index: int, first: int, last: int) -> dict:
        record = self.records[index]
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        offsets, chars = self.line_tokens[lo:hi], self.line_chars[lo:hi]
        lines = (record["line_start"], record["line_end"])
        span = None
        if len(offsets) >= 2:
            top = len(offsets) - 2
            body = record["token_start"] + record.get("header_tokens", 0)
            a = min(int(np.searchsorted(offsets, max(first - body, 0), side="right")) - 1, top)
            b = min(int(np.searchsorted(offsets, max(last - 1 - body, 0), side="right")) - 1, top)
            lines = (record["line_start"] + a, record["line_start"] + b)
            span = (record.get("char_offset", 0) + int(chars[a]), record.get("char_offset", 0) + int(chars[b + 1]))
            # The token range of those whole lines, for an excerpt that starts at a line.
            line_tokens = (body + int(offsets[a]), body + int(offsets[b + 1]))
        else:
            line_tokens = (first, last)
        return {
            "path": record["path"], "page": record["page"], "kind": record["kind"], "lines": lines,
            "chars": span, "tokens": (first, last), "line_tokens": line_tokens, **record.get("extra", {}),
        }

    def spans(self) -> list[DocumentSpan]:
        """Where each document lies in the stream, for window headings (`ingest.headings`)."""
        return [
            DocumentSpan(r["token_start"], r.get("header_tokens", 0), r["tokens"], r["path"], r["kind"],
                         self.line_tokens[int(self.offsets[i]) : int(self.offsets[i + 1])].tolist() or None)
            for i, r in enumerate(self.records)
        ]

    def resolve_as_of(self, as_of: str) -> tuple[int, str]:
        """(end token, label) for `path` or `path#page=N`: the stream up to the end of that
        document (for a paged file without a page: its last page). A path may be given in
        full or as a unique suffix (e.g. the file name)."""
        path, _, page_text = as_of.partition("#page=")
        page = None
        if page_text:
            if not page_text.isdigit():
                raise CorpusError(f"bad page in --as-of {as_of!r} (expected PATH#page=N)")
            page = int(page_text)
        exact = [r for r in self.records if r["path"] in (path, os.path.abspath(path))]
        if not exact:
            norm = re.sub(r"^(\./)+", "", path.replace(os.sep, "/"))
            candidates = sorted({r["path"] for r in self.records if r["path"].endswith("/" + norm) or r["path"] == norm})
            if len(candidates) > 1:
                raise CorpusError(f"--as-of {path!r} matches {len(candidates)} documents ({', '.join(candidates[:3])}...): give more of the path")
            exact = [r for r in self.records if candidates and r["path"] == candidates[0]]
        if not exact:
            raise CorpusError(f"no document {path!r} in this corpus (`rmtqa corpora` lists corpora; documents are listed in the ingest report)")
        if page is not None:
            exact = [r for r in exact if r["page"] == page]
            if not exact:
                raise CorpusError(f"{path} has no page {page} in this corpus")
        record = exact[-1]
        label = record["path"] + (f"#page={record['page']}" if page is not None else "")
        return record["token_start"] + record["tokens"], label


def concat_line_arrays(records: Iterable[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-line cumulative token/char counts of `ingest.records.DocumentRecord`s, concatenated,
    with `offsets` (len(records) + 1) into them."""
    tokens, chars, offsets = [], [], [0]
    for record in records:
        lt = np.frombuffer(record.line_tokens, dtype=np.uint32) if record.line_tokens is not None else np.zeros(0, np.uint32)
        lc = np.frombuffer(record.line_chars, dtype=np.uint32) if record.line_chars is not None else np.zeros(0, np.uint32)
        tokens.append(lt)
        chars.append(lc)
        offsets.append(offsets[-1] + len(lt))
    cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(tokens), cat(chars), np.asarray(offsets, dtype=np.int64)
