"""Python source that ships with this machine, split into training and held-out packages.

Code facts (`model.code_facts`) are to be learned from many codebases, never one fixed
repository, and validated on packages training never read. The sources are the top-level
packages and modules of the standard library and of site-packages (`sysconfig`'s stdlib,
purelib and platlib paths; dunder names such as `__hello__` are test stubs and left out);
a name found twice keeps its first place in that order. The split is a fixed rule on the
top-level name alone: a name is held out when the first two bytes of its SHA-256, as a
number, fall in the lowest HELD_OUT_PERCENT percent. So the split is the same on every
machine, Python version and install order, a package installed later falls on its fixed
side, and training and validation can never share a package (here, e.g., `json`, `logging`
and `sqlite3` are held out):

    train, held_out = split_source_roots(python_source_roots())
"""
from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

HELD_OUT_PERCENT = 10
SEARCH_PATHS = ("stdlib", "purelib", "platlib")


@dataclass(frozen=True)
class SourceRoot:
    """One top-level package (a folder with `__init__.py`) or single-file module."""

    name: str  # the import name, e.g. "json", "rank_bm25"
    path: Path  # the package folder or the module file
    origin: str  # the sysconfig path it was found under: stdlib, purelib or platlib


def is_held_out(name: str) -> bool:
    """Whether the top-level package `name` is kept for validation (see the module doc)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:2], "big") * 100 < HELD_OUT_PERCENT * 65536


def python_source_roots(search: Iterable[tuple[str, Path]] | None = None) -> list[SourceRoot]:
    """The packages and modules under the search paths ((origin, folder) pairs; default:
    this interpreter's stdlib and site-packages), sorted by name within each path."""
    if search is None:
        paths = sysconfig.get_paths()
        search = [(origin, Path(paths[origin])) for origin in SEARCH_PATHS]
    roots: dict[str, SourceRoot] = {}
    for origin, folder in search:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            name = entry.stem if entry.suffix == ".py" else entry.name
            is_source = (entry.is_dir() and (entry / "__init__.py").is_file()) or (entry.is_file() and entry.suffix == ".py")
            if is_source and name.isidentifier() and not name.startswith("__") and name not in roots:
                roots[name] = SourceRoot(name, entry, origin)
    return list(roots.values())


def split_source_roots(roots: Iterable[SourceRoot]) -> tuple[list[SourceRoot], list[SourceRoot]]:
    """(train, held out) by `is_held_out` of each root's name."""
    roots = list(roots)
    return [r for r in roots if not is_held_out(r.name)], [r for r in roots if is_held_out(r.name)]
