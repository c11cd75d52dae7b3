"""Uploaded files: where they live, what they are called, and when they go.

A corpus re-scans its source paths on every later ingest (to notice changes), so uploads
must outlive the request that brought them: they live in `$RMTQA_HOME/uploads/<corpus>/`.
The name a file was uploaded under is its name everywhere a user or the model sees it (the
token stream's document header, reports, sources, errors); the server's layout never shows.

Lifecycle, so that nothing is left behind:

1. `stage(files)` copies the files at once into `uploads/.incoming/<id>/` (the web server's
   temporary copy can then go; the reading may wait in a queue).
2. `CorpusService.ingest(..., uploads=staged)` `place`s them into `uploads/<corpus>/` only
   while it holds the corpus's writer lock, and `Placement.keep()`s them once the corpus
   records them -- or `undo()`es (refused, nothing readable, over the token cap): the folder
   is then as it was, replaced files included. A refusal by the lock places nothing.
3. Deleting a corpus deletes its folder (`remove`).

A file uploaded again under the same name replaces the earlier one (the corpus then re-reads
from the first segment that changed).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from app.corpus.format import validate_name

INCOMING = ".incoming"
STALE_SECONDS = 24 * 3600  # a staged upload older than this was abandoned (a killed server)


def safe_name(name: str) -> str:
    """A file name that is one plain path component (no folders, not hidden, <= 200 chars)."""
    name = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    name = re.sub(r"[\x00-\x1f\x7f]", "_", name)
    return name[-200:] or "upload"


@dataclass
class Staged:
    """Uploaded files copied out of the web server's cache: (path, name) pairs in one folder."""

    folder: Path
    files: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0  # their total size (they move on when placed)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Placement:
    """Staged files moved into a corpus's folder, reversible until `keep()`."""

    staged: Staged
    paths: list[str]
    added: list[Path]
    backups: list[tuple[Path, Path]]  # (backup, original place) of replaced files

    def keep(self) -> None:
        for backup, _ in self.backups:
            backup.unlink(missing_ok=True)
        self.staged.discard()

    def undo(self) -> None:
        for path in self.added:
            path.unlink(missing_ok=True)
        for backup, original in self.backups:
            os.replace(backup, original)
        self.staged.discard()
        for path in self.added:
            try:
                path.parent.rmdir()  # only when nothing else is there
            except OSError:
                pass


class UploadStore:
    """Uploaded files, per corpus, under `root` (`$RMTQA_HOME/uploads`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def directory(self, corpus: str) -> Path:
        return self.root / validate_name(corpus)

    def stage(self, files: Iterable[str | Path]) -> Staged:
        """Copy `files` (named by their base names) into a new staging folder."""
        folder = self.root / INCOMING / f"{os.getpid()}-{secrets.token_hex(6)}"
        folder.mkdir(parents=True)
        staged = Staged(folder)
        try:
            taken: set[str] = set()
            for source in files:
                name = _unique(safe_name(os.path.basename(os.fspath(source))), taken)
                target = folder / f"{len(staged.files)}"
                shutil.copyfile(source, target)
                staged.files.append((str(target), name))
                staged.bytes += target.stat().st_size
        except BaseException:
            staged.discard()
            raise
        return staged

    def place(self, corpus: str, staged: Staged) -> Placement:
        """Move staged files into `corpus`'s folder (call while holding its writer lock)."""
        folder = self.directory(corpus)
        folder.mkdir(parents=True, exist_ok=True)
        placement = Placement(staged, [], [], [])
        try:
            for path, name in staged.files:
                target = folder / name
                placement.paths.append(str(target))
                if target.is_file() and _same_file(path, target):
                    continue
                if target.exists():
                    backup = folder / f".{name}.previous-{secrets.token_hex(4)}"
                    os.replace(target, backup)
                    placement.backups.append((backup, target))
                os.replace(path, target)
                placement.added.append(target)
        except BaseException:
            placement.undo()
            raise
        return placement

    def remove(self, corpus: str) -> None:
        shutil.rmtree(self.directory(corpus), ignore_errors=True)

    def name(self, path: str | Path) -> str | None:
        """The name a stored upload was given (`book.pdf`), or None for any other path."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return None
        return "/".join(relative.parts[1:]) if len(relative.parts) > 1 else None

    def display(self, path: str) -> str:
        """A path as its user knows it: a stored upload's name, any other path unchanged."""
        return self.name(path) or path

    def clean(self, text: str) -> str:
        """`text` with every stored upload's path shortened to the name it was uploaded under."""
        return re.sub(re.escape(str(self.root) + os.sep) + r"[^" + re.escape(os.sep) + r"\s]+" + re.escape(os.sep), "", text)

    def collect_incoming(self, older_than: float = STALE_SECONDS) -> None:
        """Delete staging folders left by a killed server (older than `older_than` seconds)."""
        incoming = self.root / INCOMING
        if not incoming.is_dir():
            return
        now = time.time()
        for entry in incoming.iterdir():
            try:
                if now - entry.stat().st_mtime > older_than:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                continue


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `stem (2).ext` ... when an upload has two files of that name."""
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{stem} ({n}){suffix}", n + 1
    taken.add(candidate)
    return candidate


def _same_file(a: str | Path, b: str | Path) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
