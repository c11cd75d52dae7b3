"""The one writer of a corpus: an exclusive `flock`, and who holds it."""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

from app.corpus.errors import CorpusLocked
from app.corpus.format import LOCK


class CorpusLock:
    """An exclusive, non-blocking `flock` on `NAME/lock` for the one writer of a corpus.

    The kernel drops the lock when its holder dies (kill -9 included), so a stale lock never
    needs cleaning up. The holder's pid is written into the file for the refusal message.
    """

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name
        self.handle = None

    def __enter__(self) -> "CorpusLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / LOCK, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                handle.close()
                raise
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise CorpusLocked(f"corpus {self.name} is being written by another process (pid {pid}); try again when it has finished") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            try:
                self.handle.seek(0)
                self.handle.truncate()
            except OSError:
                pass
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def writer_pid(directory: Path) -> int | None:
    """The pid of a live process writing this corpus, else None. Side-effect free (never
    touches the lock, so it cannot make a starting writer fail); a pid left by a killed
    writer is ignored because that process is gone."""
    try:
        pid = int((directory / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
