"""One document of the token stream: where it came from and which tokens it became (the type
`ingest.stream` builds, `ingest.report` counts and the corpus store saves)."""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class DocumentRecord:
    """One document in the stream: where it came from and which tokens it became.

    `tokens` counts the document's tokens in the stream (its header included, which comes
    first: `header_tokens`). Lines are file lines (`line_start`..`line_end`); `char_offset`
    is where the document's text starts in its file's (or page's) extracted text.
    """

    path: str
    page: int | None
    kind: str
    sha256: str
    tokens: int
    char_count: int
    line_start: int
    line_end: int
    token_start: int
    header_tokens: int = 0
    char_offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # Cumulative token / character counts per line (len = lines + 1); None when the stream
    # only counts (dry runs), which keeps memory flat on huge inputs.
    line_tokens: array | None = field(default=None, repr=False)
    line_chars: array | None = field(default=None, repr=False)

    @property
    def token_end(self) -> int:
        return self.token_start + self.tokens

    def to_dict(self) -> dict:
        skip = ("line_tokens", "line_chars")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
