"""Size caps that keep ingestion safe on hostile input and bounded on huge input.

Defaults are generous for real corpora (a 1 GB book streams; caps apply to what must be
held in memory at once or what can only be a mistake or an attack, such as a zip bomb).
"""
from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    # A source file bigger than this is generated or minified, not something to read.
    max_code_file_bytes: int = 2 * MiB
    # Everything under one folder, repository or archive; later files are skipped.
    max_tree_bytes: int = 8 * GiB
    # Zip archives (and EPUBs, which are zips): checked before anything is decompressed.
    max_zip_total_bytes: int = 2 * GiB
    max_zip_entries: int = 100_000
    max_zip_ratio: float = 100.0
    # Small files may compress very well legitimately: entries past the ratio are tolerated
    # while what they expand to, all of them together, stays under this.
    zip_ratio_min_bytes: int = 1 * MiB
    # A PDF, EPUB or nested zip inside an archive is read into memory to be parsed.
    max_member_bytes: int = 512 * MiB
    max_archive_depth: int = 3
    # A Word document's parts are all read into memory by python-docx: what they expand to.
    max_docx_bytes: int = 256 * MiB
    # A page rendered for OCR is held in memory (3 bytes a pixel): bigger pages render smaller.
    max_ocr_pixels: int = 25_000_000
    # Text is read and tokenized in blocks of about this many characters (split at lines).
    text_block_chars: int = 1 * MiB


DEFAULT_LIMITS = Limits()


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB' (for skip reasons)."""
    if size < 1024:
        return f"{int(size)} bytes"
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
