"""From paths the user named to Documents: files, folders, repositories and zips, by type.

Every path is accounted for: it yields Documents, or it is reported to `report` with a
one-line reason; no exception from a bad file reaches the caller (a file that fails half
way keeps the Documents it already gave; see `ingest.documents.guarded`). Order is deterministic: paths as given, then
directory order within a tree, with Python files in import order (see `ingest.order`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from langchain_core.documents import Document

from ingest.archive import archive_members, open_zip
from ingest.documents import guarded
from ingest.epub import EpubLoader
from ingest.files import FileRef, classify, generated_reason, printable_path
from ingest.html import HtmlLoader
from ingest.limits import DEFAULT_LIMITS, Limits, human_bytes
from ingest.ocr import PageOcr
from ingest.order import order_files
from ingest.pdf import PdfLoader
from ingest.report import SkipSink
from ingest.text import TextLoader
from ingest.walk import IGNORE_FILE, TreeFilter, walk_folder
from ingest.word import DocxLoader


def display_path(path: str | Path) -> str:
    """The path as the user wrote it, normalised, with forward slashes (undecodable bytes
    escaped, see `printable_path`)."""
    return printable_path(os.path.normpath(str(path)).replace(os.sep, "/"))


def iter_documents(paths: Iterable[str | Path | tuple[str | Path, str]], report: SkipSink, *,
                   limits: Limits = DEFAULT_LIMITS, ocr: PageOcr | None = None) -> Iterator[Document]:
    """Documents of every readable file under `paths`, in a deterministic order. A path may
    come as (path, name): documents and skips are then named from `name` (what the user
    knows it as, e.g. an upload's file name) instead of the server's path. `ocr` reads PDF
    pages that have no text layer."""
    for raw in paths:
        path, display = (Path(raw[0]), raw[1]) if isinstance(raw, tuple) else (Path(raw), display_path(raw))
        try:
            if not os.path.lexists(path):
                report.skip(display, "no such file or folder")
            elif path.is_dir():
                yield from _folder(path, display, report, limits, ocr)
            elif path.is_file():
                yield from read_file(FileRef.from_path(path, display), report, limits, ocr)
            elif path.is_symlink():
                os.stat(path)  # raises the real problem (a loop, a missing target)
                report.skip(display, "not a regular file")
            else:
                report.skip(display, "not a regular file (device, socket or pipe)")
        except OSError as error:
            report.skip(display, f"cannot read: {error.strerror or error}")


def _folder(path: Path, display: str, report: SkipSink, limits: Limits, ocr: PageOcr | None) -> Iterator[Document]:
    if (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir():
        if path.name != ".git":
            report.skip(display, "bare git repository (no working tree): clone it, then ingest the clone")
            return
        path, display = path.parent, display_path(path.parent)  # repo/.git means the repository
    yield from read_tree(walk_folder(path, "" if display == "." else display, report), report, limits, ocr)


def read_tree(files: list[FileRef], report: SkipSink, limits: Limits, ocr: PageOcr | None = None) -> Iterator[Document]:
    """The files of one folder or archive, Python in import order, within the size cap."""
    budget = limits.max_tree_bytes
    for ref in order_files(files, limits.max_code_file_bytes):
        kind, reason = kind_or_reason(ref, limits)
        if reason is None and ref.size > budget:
            reason = f"over the size cap for one folder or archive ({human_bytes(limits.max_tree_bytes)})"
        if reason:
            report.skip(ref.source, reason)
            continue
        budget -= ref.size
        yield from _load(ref, kind, report, limits, ocr)


def kind_or_reason(ref: FileRef, limits: Limits) -> tuple[str | None, str | None]:
    """The loader kind for a file (see `classify`), or why it is not read at all."""
    kind = classify(ref)
    if kind is None and not ref.suffix and ref.size and ref.head(2) == b"#!":
        kind = "code"  # an executable script
    if ref.size == 0:
        return kind, "empty file"
    if kind is None:
        return kind, f"unsupported file type ({ref.suffix or 'no extension'})"
    if kind == "code":
        reason = generated_reason(ref)
        if reason is None and ref.size > limits.max_code_file_bytes:
            reason = f"source file too large ({human_bytes(ref.size)}, limit {human_bytes(limits.max_code_file_bytes)})"
        return kind, reason
    return kind, None


def read_file(ref: FileRef, report: SkipSink, limits: Limits, ocr: PageOcr | None = None) -> Iterator[Document]:
    """Documents of one file, dispatched by type; problems are reported, never raised."""
    kind, reason = kind_or_reason(ref, limits)
    if reason:
        report.skip(ref.source, reason)
        return
    yield from _load(ref, kind, report, limits, ocr)


def _load(ref: FileRef, kind: str, report: SkipSink, limits: Limits, ocr: PageOcr | None) -> Iterator[Document]:
    if kind == "zip":
        yield from guarded(_zip(ref, report, limits, ocr), report, ref.source)
    elif kind == "pdf":
        yield from PdfLoader(ref, report, ocr=ocr, limits=limits).lazy_load()
    elif kind == "epub":
        yield from EpubLoader(ref, report, limits=limits).lazy_load()
    elif kind == "docx":
        yield from DocxLoader(ref, report, limits=limits).lazy_load()
    elif kind == "html":
        yield from HtmlLoader(ref, report, limits=limits).lazy_load()
    else:
        yield from TextLoader(ref, report, kind=kind, limits=limits).lazy_load()


def _zip(ref: FileRef, report: SkipSink, limits: Limits, ocr: PageOcr | None) -> Iterator[Document]:
    archive = open_zip(ref, report, limits)
    if archive is None:
        return
    with archive:
        members = archive_members(archive, ref, report)
        yield from read_tree(_filter_tree(members, ref, report, limits), report, limits, ocr)


def _filter_tree(members: list[FileRef], archive: FileRef, report: SkipSink, limits: Limits) -> list[FileRef]:
    """The folder rules (skipped folders, .gitignore) applied to an archive's members."""
    rules = TreeFilter()
    for member in members:
        if member.name == IGNORE_FILE:
            try:
                lines = member.read_bytes(limits.max_code_file_bytes).decode("utf-8", "replace").splitlines()
            except Exception:  # noqa: BLE001 - the file itself is reported when it is read
                continue
            rules.add_ignore_rules(member.relpath.rpartition("/")[0], lines)
    venvs = {member.relpath.rpartition("/")[0] for member in members if member.name == "pyvenv.cfg"}
    folder_reasons: dict[str, str | None] = {}
    kept = []
    for member in members:
        parts = member.relpath.split("/")
        reason = None
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in folder_reasons:
                folder_reasons[folder] = rules.dir_reason(folder, is_venv=folder in venvs)
                if folder_reasons[folder]:
                    report.skip(f"{archive.source}/{folder}", folder_reasons[folder])
            reason = folder_reasons[folder]
            if reason:
                break
        if reason:
            continue
        reason = rules.file_reason(member.relpath)
        if reason:
            report.skip(member.source, reason)
        else:
            kept.append(member)
    return kept
