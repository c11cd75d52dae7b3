"""The on-disk format of a corpus: layout, shards, hash chain, manifest, atomic writes.

Layout (`$RMTQA_HOME/corpora/NAME/`)::

    manifest.json                        the only mutable file; replaced atomically
    lock                                 flock'ed by the one writer; holds its pid
    documents-<h>.json                   records of the token stream (path, page, lines, ...)
    lines-<h>.safetensors                per-line cumulative token / char counts (provenance)
    shard-<first>-<hash>.safetensors     K consecutive segments (see below)

A corpus's token stream is its documents' tokens in ingest order (`ingest.stream`);
segments are fixed-size (the model's `segment_size`) over it. A shard holds, for its
segments `first .. first+count-1`:

- `states`  (count, M, d) float16: the memory after every segment, for sources and as-of
  answers (approximate: rounded from the float32 recurrence);
- `exact`   (M, d) float32: the memory after the shard's LAST segment, bit-exact, from which
  reading can continue (resume, append, re-read after a change);
- `hashes`  (count, 32) uint8: the hash chain h_j = sha256(h_{j-1} + token ids of segment j
  as little-endian uint32), h_{-1} = sha256(b"rmtqa-corpus"); equal h_j means an equal
  stream up to the end of segment j;
- `tokens`  the token ids of those segments (int16 when the vocabulary fits, else int32),
  so excerpts and as-of reads never need the source files again.

Files other than the manifest are immutable and content-named: a shard rewritten with other
content gets another name, and the manifest is swapped (tmp + fsync + os.replace) only after
the file it points to is durable. A crash (kill -9, power loss) leaves either the old or the
new manifest, never a half-written one; files no manifest references are collected on the
next write, and a folder that a killed `rm` left behind when corpora are next listed.

Storage per token, with M memory vectors of width d, segment size S and K segments per shard:
2·M·d/S (float16 states) + 4·M·d/(K·S) (exact states) + 2 (token ids) + 32/S (hashes)
+ ~0.7 (line index: two int32 per line) + the documents JSON (~300 bytes per document, i.e.
per PDF page or 1 MB text block). The shipped reader's shape (M=8, d=128, S=256, K=32)
gives 8 + 0.5 + 2 + 0.125 + ~0.7 = ~11.5 bytes per token, ~12 MB per million tokens.
M counts the rows of the model's state: a reader with an associative memory
(`model/associative.py`) carries its matrices as rows too (4 layers x 96 rows with 16-dim
keys: M = 392, ~400 bytes per token, 0.4 GB per million tokens).
The float16 states dominate; `bytes_per_token` in every ingest report says what a corpus
really takes. Trade-offs taken:

- Every segment keeps a float16 state (not every k-th): sources then score stored states
  only, with no reading at ask time. Keeping every k-th would divide the dominant term by k
  at the price of re-reading up to k-1 segments per scored point when asking.
- Exact float32 states only every K segments (plus right before a final partial segment):
  after a change, reading restarts from the nearest exact state at or before the first
  changed segment, i.e. up to K-1 unchanged segments are read again (bit-exactness needs
  the float32 state; float16 everywhere would make restarts approximate). Appending never
  re-reads old segments: the last full segment always ends a shard, so an append re-reads
  only the old partial segment (which is no longer the same segment) and the new ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.corpus.errors import CorpusDamaged, CorpusError

FORMAT = "rmtqa-corpus/2"  # 2: the manifest records the sha256 of every file it references
MANIFEST = "manifest.json"
LOCK = "lock"
STATE_DTYPE = torch.float16
DEFAULT_SHARD_SEGMENTS = 32
CHAIN_SEED = hashlib.sha256(b"rmtqa-corpus").digest()
CORPUS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MANIFEST_KEYS = {"name", "model", "tokenizer", "sources", "documents_file", "documents_sha256", "lines_file",
                 "lines_sha256", "files", "tokens", "segments", "shards", "complete"}


def shard_segments() -> int:
    """Segments per shard (K). `RMTQA_SHARD_SEGMENTS` overrides it (tests use tiny shards)."""
    value = os.environ.get("RMTQA_SHARD_SEGMENTS")
    return max(1, int(value)) if value else DEFAULT_SHARD_SEGMENTS


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not CORPUS_NAME.fullmatch(name):
        raise CorpusError(f"invalid corpus name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, not starting with a symbol)")
    return name


# --------------------------------------------------------------------------- atomic files


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers and crashes see the old or the new file only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def chain_hashes(tokens: np.ndarray, segment_size: int, seed: bytes = CHAIN_SEED) -> list[bytes]:
    """The hash chain over the segments of `tokens` (see the module doc)."""
    tokens = np.ascontiguousarray(tokens, dtype="<u4")
    hashes, previous = [], seed
    for start in range(0, len(tokens), segment_size):
        previous = hashlib.sha256(previous + tokens[start : start + segment_size].tobytes()).digest()
        hashes.append(previous)
    return hashes


def memory_sha256(state: torch.Tensor) -> str:
    """sha256 of a memory state's float32 bytes (C order, little-endian)."""
    array = state.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return hashlib.sha256(array.tobytes()).hexdigest()



def simulated_crash(point: str, count: int) -> None:
    """Test hook: `RMTQA_TEST_CRASH=shard-written:N` SIGKILLs this process after the N-th
    shard file of this run is durable but before the manifest points to it (the worst
    moment for a crash); `RMTQA_TEST_CRASH=removing:1` after `remove` renamed the corpus
    away but before it deleted it. Unset in normal use."""
    value = os.environ.get("RMTQA_TEST_CRASH")
    if value and value == f"{point}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Shard:
    file: str
    first: int
    count: int
    sha256: str

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def to_dict(self) -> dict:
        return {"file": self.file, "first": self.first, "count": self.count, "sha256": self.sha256}


def referenced_files(manifest: dict) -> dict[str, str]:
    """{file: sha256} of every file a manifest references."""
    files = {manifest["documents_file"]: manifest["documents_sha256"], manifest["lines_file"]: manifest["lines_sha256"]}
    files.update((entry["file"], entry["sha256"]) for entry in manifest["shards"])
    return files


def parse_manifest(name: str, text: str | bytes) -> dict:
    """The manifest in `text`, checked for the shape every reader relies on (the format,
    the keys, contiguous shards); anything else raises `CorpusDamaged`."""
    try:
        manifest = json.loads(text)
    except ValueError:
        raise CorpusDamaged(name, "its manifest is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise CorpusDamaged(name, "its manifest is not a JSON object")
    sources = manifest.get("sources") if isinstance(manifest.get("sources"), list) else ()
    if manifest.get("format") != FORMAT:
        raise CorpusDamaged(name, f"its manifest has an unknown format {manifest.get('format')!r}, not {FORMAT}", sources)
    missing = sorted(MANIFEST_KEYS - manifest.keys())
    if missing:
        raise CorpusDamaged(name, f"its manifest lacks {', '.join(missing)}", sources)
    model = manifest["model"]
    if not (isinstance(model, dict) and isinstance(model.get("segment_size"), int) and isinstance(model.get("fingerprint"), str)
            and all(isinstance(manifest[key], int) for key in ("tokens", "segments", "files")) and isinstance(manifest["sources"], list)):
        raise CorpusDamaged(name, "its manifest holds values of the wrong type", sources)
    try:
        shards = [Shard(**entry) for entry in manifest["shards"]]
        contiguous = all(isinstance(s.first, int) and isinstance(s.count, int) and s.count > 0 for s in shards) and \
            [s.first for s in shards] == [0, *(s.last + 1 for s in shards[:-1])][: len(shards)]  # none yet: a first reading
    except TypeError:
        contiguous = False
    if not contiguous or not all(isinstance(s.sha256, str) for s in shards):
        raise CorpusDamaged(name, "its manifest lists its shards wrongly", sources)
    return manifest


def folder_bytes(directory: Path) -> int:
    return sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())
