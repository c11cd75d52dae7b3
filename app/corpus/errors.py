"""The corpus store's errors: each message is one line a user can act on."""
from __future__ import annotations

import shlex
from typing import Sequence


class CorpusError(Exception):
    """A problem the user can act on; its message is one clear line."""


class CorpusLocked(CorpusError):
    """Another process (or thread) is writing this corpus."""


class CorpusDamaged(CorpusError):
    """A file of a corpus is missing, truncated or altered, or its manifest is unreadable
    (`problem` says which). The message says how to repair (re-read) or delete it."""

    def __init__(self, name: str, problem: str, sources: Sequence[str] = ()):
        self.problem = problem
        paths = " ".join(shlex.quote(s) for s in sources[:3]) + (" ..." if len(sources) > 3 else "") if sources else "PATH..."
        super().__init__(f"corpus {name} is damaged ({problem}): `rmtqa ingest {paths} --corpus {name}` repairs it, `rmtqa rm {name}` deletes it")


class CorpusChanged(CorpusError, FileNotFoundError):
    """A writer replaced a file this snapshot points to while it was being read: open the
    corpus again (a `FileNotFoundError` too, for callers that retry on one)."""
