"""Zip archives read in place, never extracted: nothing is written, so nothing can escape.

Before any byte is decompressed the central directory is checked against the caps in
`Limits` (entry count, total uncompressed size, compression ratio of the entries together
and of the whole archive): an archive that fails them is refused whole, as a zip bomb
would be. Entries with absolute paths, `..`
components or symlink modes are skipped with a reason, as are encrypted entries; the rest
become `FileRef`s named `archive.zip/inner/path`.
"""
from __future__ import annotations

import io
import re
import stat
import zipfile
from pathlib import PurePosixPath
from typing import BinaryIO

from ingest.files import FileRef
from ingest.limits import Limits, human_bytes
from ingest.report import SkipSink

_DRIVE = re.compile(r"^[A-Za-z]:")


def open_zip(ref: FileRef, report: SkipSink, limits: Limits) -> zipfile.ZipFile | None:
    """The archive, opened for reading in place, or None after reporting why it was refused."""
    if ref.depth >= limits.max_archive_depth:
        report.skip(ref.source, f"archive nested more than {limits.max_archive_depth} deep")
        return None
    try:
        archive = zipfile.ZipFile(seekable(ref, limits))
    except Exception as error:  # noqa: BLE001 - BadZipFile, OSError, ValueError, ...
        report.skip(ref.source, f"damaged or not a zip archive: {error}")
        return None
    reason = refusal_reason(archive.infolist(), limits, ref.size)
    if reason:
        archive.close()
        report.skip(ref.source, reason)
        return None
    return archive


def seekable(ref: FileRef, limits: Limits) -> BinaryIO:
    """The file opened for reading, able to seek as zip needs: a file on disk as is, a member
    of another archive read into memory (ValueError past `limits.max_member_bytes`)."""
    return ref.opener() if ref.depth == 0 else io.BytesIO(ref.read_bytes(limits.max_member_bytes))


def refusal_reason(infos: list[zipfile.ZipInfo], limits: Limits, archive_bytes: int) -> str | None:
    """Why an archive must not be read at all (zip-bomb shapes), from its directory alone.

    Small entries may compress very well, but not all together: the bytes of every entry
    that expands past the ratio are added up (300 entries of 1 MiB - 1 byte are 300 MiB,
    whatever each one is), and the whole archive's expansion is measured against its size
    on disk (entries that overlap each other claim more than the archive holds)."""
    if len(infos) > limits.max_zip_entries:
        return f"refused: {len(infos)} entries (limit {limits.max_zip_entries}) — zip bomb?"
    total = sum(info.file_size for info in infos)
    if total > limits.max_zip_total_bytes:
        return f"refused: expands to {human_bytes(total)} (limit {human_bytes(limits.max_zip_total_bytes)}) — zip bomb?"
    limit = f"limit {limits.max_zip_ratio:.0f}:1"
    amplifying = [info for info in infos if info.file_size > limits.max_zip_ratio * max(info.compress_size, 1)]
    expanded = sum(info.file_size for info in amplifying)
    if expanded >= limits.zip_ratio_min_bytes:
        packed = max(sum(info.compress_size for info in amplifying), 1)
        what = f"{amplifying[0].filename!r} expands" if len(amplifying) == 1 else f"{len(amplifying)} entries expand"
        return f"refused: {what} to {human_bytes(expanded)} from {human_bytes(packed)} ({expanded / packed:.0f}:1, {limit}) — zip bomb?"
    if total >= limits.zip_ratio_min_bytes and total > limits.max_zip_ratio * max(archive_bytes, 1):
        return (f"refused: a {human_bytes(archive_bytes)} archive expands to {human_bytes(total)} "
                f"({total / max(archive_bytes, 1):.0f}:1, {limit}; overlapping entries?) — zip bomb?")
    return None


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry must not be read: a path that leaves the archive, a link, a password."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        return "unsafe path in archive (absolute path)"
    if ".." in PurePosixPath(name).parts or "\x00" in name:
        return "unsafe path in archive (path traversal)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in archive (not followed)"
    if info.flag_bits & 0x1:
        return "encrypted entry (needs a password)"
    return None


def archive_members(archive: zipfile.ZipFile, ref: FileRef, report: SkipSink) -> list[FileRef]:
    """Every safe file entry as a FileRef, sorted by path; unsafe ones reported."""
    members: dict[str, FileRef] = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        relpath = "/".join(part for part in info.filename.replace("\\", "/").split("/") if part not in ("", "."))
        source = f"{ref.source}/{relpath}"
        reason = unsafe_reason(info) or ("duplicate entry name in archive" if relpath in members else None)
        if reason:
            report.skip(f"{ref.source}/{info.filename}", reason)
            continue
        members[relpath] = FileRef(source, relpath, info.file_size, _opener(archive, info), ref.depth + 1)
    return [members[name] for name in sorted(members)]


def _opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    # zipfile stops at the declared size and checks the CRC, so a lying header cannot
    # make an entry bigger than the directory (already capped) says.
    return lambda: archive.open(info)
