"""The heading of any place in a token stream: what a reader looking at a window should know.

A window of 64 tokens cut from the middle of a file does not say which file it is, nor, in
code, which class or function it sits in: `def parse(self, text):` is a method of *some*
class, declared hundreds of lines above. An editor shows both (the tab title and the
"sticky scroll" of enclosing definitions); a window read with the question in mind
(`model/deep.py`) gets the same:

    # File: pkg/decoder.py          <- the document's header line, as the stream wrote it
    class JSONDecoder(object):      <- enclosing lines, outermost first (code only)
        def raw_decode(self, s, idx=0):

Enclosing lines are the nearest lines above with less indentation, which in Python files must
open a `class`/`def` (so a wrapped argument list or a dict literal is never taken for a
scope). Every piece is token ids cut from the stream itself, so the heading reads exactly as
the corpus does; a line longer than `max_line_tokens` is cut and closed with a newline.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Callable, Sequence

_PY_OPENER = re.compile(r"(async\s+def|def|class)\s")


@dataclass(frozen=True)
class DocumentSpan:
    """Where one document lies in the stream (the fields `DocumentRecord` and a corpus's
    saved records share); `line_tokens`: cumulative token counts per line after the header."""

    token_start: int
    header_tokens: int
    tokens: int
    path: str
    kind: str
    line_tokens: Sequence[int] | None


class WindowHeadings:
    """`headings(position)` -> the heading token ids of the place `position` of the stream."""

    def __init__(self, token_ids: Sequence[int], documents: Sequence[DocumentSpan], decode: Callable[[Sequence[int]], str],
                 newline_ids: Sequence[int], *, max_scope_lines: int = 2, max_line_tokens: int = 24):
        self.token_ids, self.documents, self.decode = token_ids, list(documents), decode
        self.newline_ids = list(newline_ids)
        self.max_scope_lines, self.max_line_tokens = max_scope_lines, max_line_tokens
        self.starts = [d.token_start for d in self.documents]
        self._headers: dict[str, list[int]] = {}  # a file's header, also for its later records (which have none)
        for d in self.documents:
            if d.header_tokens and d.path not in self._headers:
                self._headers[d.path] = list(token_ids[d.token_start : d.token_start + d.header_tokens])
        self._indents: dict[int, list[tuple[int, bool]]] = {}  # document -> (indent, opens a scope) per line

    def __call__(self, position: int) -> list[int]:
        index = bisect.bisect_right(self.starts, position) - 1
        if index < 0 or position >= self.starts[index] + self.documents[index].tokens:
            return []
        document = self.documents[index]
        content = position - document.token_start - document.header_tokens
        if content < 0:  # the window starts inside the header: it shows the header itself
            return []
        heading = list(self._headers.get(document.path, []))
        if document.kind == "code" and document.line_tokens is not None:
            heading += self._scope(index, content)
        return heading

    def _scope(self, index: int, content: int) -> list[int]:
        """The enclosing lines of the line holding content token `content`, outermost first."""
        document = self.documents[index]
        lines = self._lines(index)
        line = min(bisect.bisect_right(document.line_tokens, content) - 1, len(lines) - 1)
        indent = next((lines[j][0] for j in range(line, len(lines)) if lines[j][0] >= 0), 0)
        chosen: list[int] = []
        for j in range(line - 1, -1, -1):
            if indent == 0:
                break
            level, opens = lines[j]
            if 0 <= level < indent and opens:
                chosen.append(j)
                indent = level
        chosen = chosen[::-1][: self.max_scope_lines]
        offset = document.token_start + document.header_tokens
        ids: list[int] = []
        for j in chosen:
            line_ids = list(self.token_ids[offset + document.line_tokens[j] : offset + document.line_tokens[j + 1]])
            ids += line_ids if len(line_ids) <= self.max_line_tokens else line_ids[: self.max_line_tokens] + self.newline_ids
        return ids

    def _lines(self, index: int) -> list[tuple[int, bool]]:
        """(indent, opens a scope) of every line of a document (indent -1: blank), decoded once."""
        if index not in self._indents:
            document = self.documents[index]
            offset = document.token_start + document.header_tokens
            python = document.path.endswith((".py", ".pyi"))
            found = []
            for j in range(len(document.line_tokens) - 1):
                text = self.decode(self.token_ids[offset + document.line_tokens[j] : offset + document.line_tokens[j + 1]]).rstrip("\n")
                stripped = text.lstrip()
                level = len(text.expandtabs(4)) - len(stripped.expandtabs(4)) if stripped else -1
                found.append((level, bool(_PY_OPENER.match(stripped)) if python else True))
            if len(self._indents) > 64:
                self._indents.clear()
            self._indents[index] = found
        return self._indents[index]


def record_spans(records: Sequence) -> list[DocumentSpan]:
    """`DocumentSpan`s of a live stream's `DocumentRecord`s."""
    return [DocumentSpan(r.token_start, r.header_tokens, r.tokens, r.path, r.kind, r.line_tokens) for r in records]
