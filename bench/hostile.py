"""Hostile-input probe: `python -m bench.hostile [--json]`.

Repeats, on a small corpus, the attacks of issue 12 that the store and the loaders must
survive, and prints what happened (one JSON line with `--json`):

- `tensor_flips`: for each tensor a shard stores (`states`, `exact`, `hashes`, `tokens`), one
  byte of a middle shard is flipped; reading the corpus must fail with one clear line, and
  the next ingest must repair it, ending with the same `memory_sha256` as a clean run.
- `zip_amplification`: 300 entries of 1 MiB - 1 byte (under 1 MB of zip, 300 MiB
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
BOOK_SEGMENTS = 8  # about: 4+ shards, so that the damaged one is in the middle
TENSORS = ("states", "exact", "hashes", "tokens")


def flip_byte(path: Path, tensor: str) -> None:
    """Flip one bit in the middle of `tensor`'s bytes in a safetensors file (in place)."""
    data = bytearray(path.read_bytes())
    header_size = struct.unpack("<Q", data[:8])[0]
    begin, end = json.loads(data[8 : 8 + header_size])[tensor]["data_offsets"]
    data[8 + header_size + (begin + end) // 2] ^= 0x10
    path.write_bytes(bytes(data))


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


def book(path: Path, lines: int) -> Path:
    """Deterministic English-like text, long enough for several shards."""
    words = ("the old ship sailed north across a grey sea while the captain wrote long letters "
             "to his sister about ice fog hope and the strange traveller they found").split()
    path.write_text("".join(" ".join(words[(n * 7 + k * 3) % len(words)] for k in range(12)).capitalize() + ".\n" for n in range(lines)))
    return path


def probe_tensor_flips(workdir: Path, model_dir: Path) -> dict:
    """Flip a byte of each tensor of a middle shard in a copy of a clean corpus: is it
    reported (`check`, and any read of that shard), and does the next ingest repair it?"""
    from app.corpus.errors import CorpusDamaged
    from app.corpus.store import CorpusStore
    from app.service.corpus_service import CorpusService

    clean_service = CorpusService(workdir / "clean", model_dir)
    loaded = clean_service.load_model()
    text = book(workdir / "book.txt", BOOK_SEGMENTS * loaded.segment_size // 12)  # ~12+ tokens a line
    clean = clean_service.ingest([text], "book")
    reader = loaded.model
    results = {}
    for tensor in TENSORS:
        home = workdir / tensor
        shutil.copytree(workdir / "clean", home)
        store = CorpusStore(home)
        shard = store.open("book").shards[1]
        flip_byte(home / "corpora" / "book" / shard.file, tensor)
        messages = []
        for read in (lambda corpus: corpus.verify(), lambda corpus: corpus.states([shard.first]), lambda corpus: corpus.exact_state(shard.last)):
            try:
                read(store.open("book"))
            except CorpusDamaged as error:
                messages.append(str(error))
        repaired = CorpusService(home, model_dir, model=reader).ingest([text], "book")
        results[tensor] = {
            "detected": len(messages) == 3 and all(shard.file in message for message in messages),
            "message": messages[0] if messages else None,
            "segments_reread": repaired["segments_read"],
            "repaired": repaired["memory_sha256"] == clean["memory_sha256"] and store.check("book")["complete"],
        }
    return {"segments": clean["segments"], "shard_segments": SHARD_SEGMENTS, "damaged_shard": 1, "tensors": results,
            "all_detected_and_repaired": all(r["detected"] and r["repaired"] for r in results.values())}


def probe_zip_amplification(workdir: Path) -> dict:
    """300 entries of 1 MiB - 1 byte: refused from the central directory, nothing expanded?"""
    import zipfile

    from ingest.limits import MiB
    from ingest.pipeline import ingest_paths
    from ingest.tokenizers import ByteTokenizer

    bomb = write_amplification_zip(workdir / "amplify.zip", entries=300, entry_bytes=MiB - 1)
    opened = []
    real_open = zipfile.ZipFile.open
    zipfile.ZipFile.open = lambda self, name, *args, **kwargs: opened.append(name) or real_open(self, name, *args, **kwargs)
    try:
        started = time.perf_counter()
        report, _ = ingest_paths([bomb], ByteTokenizer())
        seconds = time.perf_counter() - started
    finally:
        zipfile.ZipFile.open = real_open
    reasons = [item.reason for item in report.skipped if item.path == str(bomb)]
    return {"zip_bytes": bomb.stat().st_size, "expands_to_bytes": 300 * (MiB - 1), "refused": bool(reasons) and not report.documents,
            "entries_expanded": len(opened), "reason": reasons[0] if reasons else None, "seconds": round(seconds, 3)}


def probe_non_utf8_name(workdir: Path, model_dir: Path) -> dict:
    """A folder with a Latin-1 file name read into a corpus, twice (the second run once failed)."""
    from app.service.corpus_service import CorpusService

    folder = write_non_utf8_folder(workdir / "names")
    service = CorpusService(workdir / "names-home", model_dir)
    first = service.ingest([folder], "names")
    again = service.ingest([folder], "names")
    return {"files": 3, "read": len(first["documents"]), "skipped": len(first["skipped"]),
            "paths": [entry["path"].removeprefix(f"{folder}/") for entry in first["documents"]], "ingested_again": again["complete"]}


def main(argv: list[str] | None = None) -> int:
    from app.paths import default_model_dir

    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="model directory to read with (default: the shipped one)")
    args = parser.parse_args(argv)
    os.environ["RMTQA_SHARD_SEGMENTS"] = str(SHARD_SEGMENTS)
    import torch

    torch.set_num_threads(1)  # bit-exact repairs are compared within one thread count
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rmtqa-hostile-") as temporary:
        workdir = Path(temporary)
        result = {
            "tensor_flips": probe_tensor_flips(workdir, args.model),
            "zip_amplification": probe_zip_amplification(workdir),
            "non_utf8_name": probe_non_utf8_name(workdir, args.model),
        }
    result["ok"] = (result["tensor_flips"]["all_detected_and_repaired"] and result["zip_amplification"]["refused"]
                    and result["zip_amplification"]["entries_expanded"] == 0 and result["non_utf8_name"]["read"] == 3
                    and result["non_utf8_name"]["ingested_again"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        flips = result["tensor_flips"]["tensors"]
        print(f"tensor flips: {', '.join(f'{t}: ' + ('detected and repaired' if r['detected'] and r['repaired'] else 'NOT HANDLED') for t, r in flips.items())}")
        print(f"zip amplification: {result['zip_amplification']['reason']}")
        print(f"non-UTF-8 name: {result['non_utf8_name']['read']}/3 files read as {result['non_utf8_name']['paths']}")
        print("ok" if result["ok"] else "FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
