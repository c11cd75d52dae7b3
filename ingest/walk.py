"""Which files of a folder, repository or archive to read, in a stable order.

Rules shared by folders and archives (`TreeFilter`): `.gitignore` files at any depth (git's
own semantics through pathspec: deeper files win, negation works, ignored folders are not
entered), and folders that are never worth reading: version control, installed
dependencies, vendored code, caches, build outputs, virtual environments.

`walk_folder` lists a directory's files before its sub-folders, each sorted by name. It
follows no symlink inside the tree: a link out of the root must not leak outside files, and
a link inside it points at something read at its real path anyway. So nothing is read twice
and loops are impossible -- links, loops included, are only reported with their reason.
No single entry can sink the walk: a name that is not UTF-8 is read under an escaped
display name (`printable_path`), and a folder that cannot be listed (a path longer than
PATH_MAX, no permission) is reported and skipped.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath
from typing import Iterable

from pathspec import GitIgnoreSpec

from ingest.files import FileRef, printable_path
from ingest.report import SkipSink

VCS = "version-control data"
SKIP_DIRS = {
    ".git": VCS, ".hg": VCS, ".svn": VCS, ".bzr": VCS,
    "node_modules": "installed dependencies", "bower_components": "installed dependencies",
    "jspm_packages": "installed dependencies", "site-packages": "installed dependencies",
    "vendor": "vendored code", "_vendor": "vendored code", "vendored": "vendored code",
    "third_party": "vendored code", "third-party": "vendored code",
    "build": "build output", "dist": "build output", "target": "build output", "_build": "build output",
    "htmlcov": "build output", ".eggs": "build output", ".next": "build output", ".nuxt": "build output",
    "__pycache__": "cache", ".mypy_cache": "cache", ".pytest_cache": "cache", ".ruff_cache": "cache",
    ".tox": "cache", ".nox": "cache", ".gradle": "cache", ".parcel-cache": "cache", ".cache": "cache",
    ".venv": "virtual environment", ".idea": "editor settings", ".vscode": "editor settings",
}
IGNORE_FILE = ".gitignore"
MAX_IGNORE_FILE_BYTES = 1024 * 1024


class TreeFilter:
    """Skip decisions for paths inside one tree (POSIX paths relative to its root)."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str]] = {}
        self._specs: dict[str, GitIgnoreSpec] = {}

    def add_ignore_rules(self, directory: str, lines: Iterable[str]) -> None:
        """Rules of a .gitignore in `directory` ('' for the root); later rules win."""
        lines = list(lines)
        if not lines:
            return
        self._lines.setdefault(directory, []).extend(lines)
        self._specs[directory] = GitIgnoreSpec.from_lines(self._lines[directory])

    def dir_reason(self, relpath: str, is_venv: bool = False) -> str | None:
        name = PurePosixPath(relpath).name
        if name in SKIP_DIRS:
            return f"skipped folder: {SKIP_DIRS[name]}"
        if name.endswith(".egg-info"):
            return "skipped folder: build output"
        if is_venv:
            return "skipped folder: virtual environment"
        if self._ignored(relpath, is_dir=True):
            return "ignored by .gitignore"
        return None

    def file_reason(self, relpath: str) -> str | None:
        return "ignored by .gitignore" if self._ignored(relpath, is_dir=False) else None

    def _ignored(self, relpath: str, is_dir: bool) -> bool:
        if not self._specs:
            return False
        parts = relpath.split("/")
        for depth in range(len(parts) - 1, -1, -1):  # the deepest .gitignore decides first
            spec = self._specs.get("/".join(parts[:depth]))
            if spec is None:
                continue
            result = spec.check_file("/".join(parts[depth:]) + ("/" if is_dir else ""))
            if result.include is not None:
                return bool(result.include)
        return False


def join(prefix: str, relpath: str) -> str:
    return f"{prefix}/{relpath}" if prefix else relpath


def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_IGNORE_FILE_BYTES).decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def walk_folder(root: Path, display: str, report: SkipSink) -> list[FileRef]:
    """The files to read under `root` (see module doc); everything else is reported."""
    real_root = Path(os.path.realpath(root))
    rules = TreeFilter()
    rules.add_ignore_rules("", _read_lines(root / ".git" / "info" / "exclude"))
    files: list[FileRef] = []
    stack = [(root, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:  # a folder whose path is too long (or unreadable) is skipped, not the whole tree
            if (folder / IGNORE_FILE).is_file():
                rules.add_ignore_rules(rel_folder, _read_lines(folder / IGNORE_FILE))
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            report.skip(join(display, printable_path(rel_folder)) or ".", f"cannot list folder: {error.strerror or error}")
            continue
        subfolders = []
        for entry in entries:
            rel = join(rel_folder, entry.name)  # the real name, for .gitignore rules
            source = join(display, printable_path(rel))
            try:
                if entry.is_symlink():
                    _symlink(Path(entry.path), source, real_root, rules.file_reason(rel), report)
                elif entry.is_dir(follow_symlinks=False):
                    reason = rules.dir_reason(rel, is_venv=os.path.isfile(os.path.join(entry.path, "pyvenv.cfg")))
                    if reason:
                        report.skip(source, reason)
                    else:
                        subfolders.append((Path(entry.path), rel))
                elif entry.is_file(follow_symlinks=False):
                    reason = rules.file_reason(rel)
                    if reason:
                        report.skip(source, reason)
                    else:
                        files.append(FileRef.from_path(Path(entry.path), source, printable_path(rel)))
                else:
                    report.skip(source, "not a regular file (device, socket or pipe)")
            except OSError as error:
                report.skip(source, f"cannot read: {error.strerror or error}")
        stack.extend(reversed(subfolders))
    return files


def _symlink(path: Path, source: str, real_root: Path, ignored: str | None, report: SkipSink) -> None:
    """Report why a symlink is not followed: every target is either outside the root or
    read at its real path (so nothing is read twice and no loop is possible)."""
    if ignored:
        report.skip(source, ignored)
        return
    try:
        os.stat(path)
    except OSError as error:
        report.skip(source, "symlink loop" if error.errno == errno.ELOOP else "broken symlink")
        return
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(real_root):
        report.skip(source, "symlink points outside the folder (not followed)")
    elif target.is_dir() and Path(os.path.realpath(path.parent)).is_relative_to(target):
        report.skip(source, "symlink loop (points to a folder that contains it)")
    else:
        where = target.relative_to(real_root).as_posix()
        report.skip(source, f"symlink (not followed; {where} is read at its real path)")
