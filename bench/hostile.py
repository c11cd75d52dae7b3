"""Hostile-input probe: `python -m bench.hostile [--json]`.

Repeats, on a small corpus, the attacks of issue 12 that the store and the loaders must
survive, and prints what happened (one JSON line with `--json`):

- `tensor_flips`: for each tensor a shard stores (`states`, `exact`, `hashes`, `tokens`), one
  byte of a middle shard is flipped; reading the corpus must fail with one clear line, and
  the next ingest must repair it, ending with the same `memory_sha256` as a clean run.
- `zip_amplification`: 300 entries of 1 MiB - 1 byte (a few hundred KB of zip, 300 MiB
  expanded) must be refused before a byte is expanded.
- `non_utf8_name`: a folder holding a file whose name is not UTF-8 must ingest every file.

The corpus is read with the shipped model (`assets/default`, or `--model DIR`), in tiny
shards so that a middle shard exists; the whole probe takes seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

AMPLIFY_LINE = b"the same line again and again, compressed to almost nothing\n"
SHARD_SEGMENTS = 2
TENSORS = ("states", "exact", "hashes", "tokens")


def write_amplification_zip(path: Path, entries: int, entry_bytes: int, padding: bytes = b"") -> Path:
    """A zip of `entries` text files of `entry_bytes` each, plus `padding` stored uncompressed
    as `padding.bin` when given (it lowers the archive's overall ratio).

    The files share one repetitive body, deflated once, and differ in a short last line
    (deflated on its own after a full flush, so the streams simply concatenate): 300 MiB of
    distinct files take milliseconds to write, not the seconds deflating them would."""
    tail = len(b"part 000000\n")
    body = (AMPLIFY_LINE * (entry_bytes // len(AMPLIFY_LINE) + 1))[: max(entry_bytes - tail - 1, 0)] + b"\n"
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated_body = compressor.compress(body) + compressor.flush(zlib.Z_FULL_FLUSH)
    body_crc = zlib.crc32(body)
    members = []
    for number in range(entries):
        last_line = f"part {number:06d}\n".encode()[: entry_bytes - len(body)]
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = deflated_body + compressor.compress(last_line) + compressor.flush()
        members.append((f"part-{number:03d}.txt", 8, data, zlib.crc32(last_line, body_crc), len(body) + len(last_line)))
    if padding:
        members.append(("padding.bin", 0, padding, zlib.crc32(padding), len(padding)))
    return write_zip(path, members)


def write_zip(path: Path, members: list[tuple[str, int, bytes, int, int]], overlapping: bool = False) -> Path:
    """A zip written by hand from (name, method, compressed data, crc32, size) members.
    `overlapping`: every directory entry points at the first member's data (the shape of
    a non-recursive zip bomb, which zipfile cannot write)."""
    zip_bytes, directory = bytearray(), bytearray()
    for name, method, data, crc, size in members:
        encoded = name.encode()
        fields = (20, 0, method, 0, 0x21, crc, len(data), size, len(encoded))  # version, flags, method, time, date (1980-01-01)
        offset = 0 if overlapping else len(zip_bytes)
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, offset) + encoded
        if not (overlapping and zip_bytes):
            zip_bytes += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, 0) + encoded + data
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(zip_bytes), 0)
    path.write_bytes(bytes(zip_bytes + directory + end))
    return path


def write_non_utf8_folder(folder: Path) -> Path:
    """A folder with `a.txt`, `caf<0xE9>.txt` (Latin-1, not UTF-8) and `z.txt`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in ((b"a.txt", "first file\n"), (b"caf\xe9.txt", "a file whose name is Latin-1\n"), (b"z.txt", "last file\n")):
        Path(os.fsdecode(bytes(folder) + b"/" + name)).write_text(text)
    return folder
