"""What an ingest run did with every input: a document with tokens, or a skip with a reason.

Loaders never raise to their caller for bad input; they call `report.skip(...)` and carry
on. `IngestReport` is that collector and also the JSON contract of `rmtqa ingest --json`:
`{"documents": [{"path", "kind", "pages", "tokens", ...}], "skipped": [{"path", "reason"}],
"tokens": total, "seconds": ..., "tokenizer": ...}`.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Protocol

from ingest.records import DocumentRecord


@dataclass(frozen=True)
class Skipped:
    """Something that was not ingested, with a one-line human reason.

    `page` is set when only one page of a file was skipped (the rest of it was read).
    """

    path: str
    reason: str
    page: int | None = None

    def to_dict(self) -> dict:
        data: dict = {"path": self.path, "reason": self.reason}
        if self.page is not None:
            data["page"] = self.page
        return data


class SkipSink(Protocol):
    """Anything loaders can report skips to (an `IngestReport`, or a test's fake)."""

    def skip(self, path: str, reason: str, page: int | None = None) -> None: ...


@dataclass
class FileEntry:
    """One ingested file, summed over its documents (pages, text blocks, chapters)."""

    path: str
    kind: str
    pages: int | None
    documents: int
    tokens: int
    chars: int
    token_start: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestReport:
    """Accounts for every input: `documents` (one entry per file) and `skipped`."""

    tokenizer: str = ""
    documents: list[FileEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    def skip(self, path: str, reason: str, page: int | None = None) -> None:
        self.skipped.append(Skipped(str(path), _one_line(reason), page))

    def add(self, record: DocumentRecord) -> None:
        """Count one document; consecutive documents of the same file share an entry."""
        last = self.documents[-1] if self.documents else None
        if last is None or last.path != record.path:
            last = FileEntry(record.path, record.kind, None, 0, 0, 0, record.token_start)
            self.documents.append(last)
        if record.page is not None:
            last.pages = (last.pages or 0) + 1
        last.documents += 1
        last.tokens += record.tokens
        last.chars += record.char_count
        self.tokens += record.tokens

    def finish(self, seconds: float) -> None:
        """Close the run: a file none of whose pages was read gets one entry, not one per page."""
        self.seconds = round(seconds, 3)
        read = {entry.path for entry in self.documents}
        per_page: dict[str, list[Skipped]] = {}
        for item in self.skipped:
            if item.page is not None and item.path not in read:
                per_page.setdefault(item.path, []).append(item)
        merged: list[Skipped] = []
        for item in self.skipped:
            pages = per_page.get(item.path)
            if item.page is None or pages is None:
                merged.append(item)
            elif item is pages[0]:
                merged.append(Skipped(item.path, _summarise(pages)))
        self.skipped = merged

    def to_dict(self) -> dict:
        return {
            "documents": [entry.to_dict() for entry in self.documents],
            "skipped": [item.to_dict() for item in self.skipped],
            "tokens": self.tokens,
            "seconds": self.seconds,
            "tokenizer": self.tokenizer,
        }

    def to_json(self) -> str:
        """The report as one line of JSON (the `--json` contract)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


_PAGE_SUFFIX = re.compile(r" page \d+$")


def _summarise(pages: list[Skipped]) -> str:
    """One reason for a file whose every page was skipped."""
    reasons = list(dict.fromkeys(_PAGE_SUFFIX.sub("", item.reason) for item in pages))
    count = f"all {len(pages)} pages" if len(pages) > 1 else "1 page"
    if len(reasons) == 1:
        return f"{reasons[0]} ({count})"
    return f"no readable page ({count}): " + "; ".join(reasons[:3])


def _one_line(reason: str) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= 300 else text[:297] + "..."
