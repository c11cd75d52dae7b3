"""A read-only snapshot of one corpus, every file checked before it is read.

Integrity. The manifest records the sha256 of every file it references, and a file is
checked against it before anything is read from it (once per process while the file's
inode, size and mtime stay the same; `rmtqa check` re-hashes everything). A missing,
truncated or altered file, or an unreadable manifest, raises `CorpusDamaged`: one line
naming the corpus, the file and the command that repairs it. The next ingest repairs: it
keeps the leading shards that are intact, re-reads from the exact state that ends the last
of them, and rewrites a damaged documents or lines file; the result is the same corpus,
bit for bit, as a run that never saw the damage. A corpus whose manifest is unreadable is
still listed (`CorpusStore.summaries`, with `damaged`) so that it can be seen and deleted.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open

from app.corpus.documents import DocumentIndex
from app.corpus.errors import CorpusChanged, CorpusDamaged, CorpusError
from app.corpus.format import CHAIN_SEED, MANIFEST, Shard, chain_hashes, folder_bytes, memory_sha256, parse_manifest, referenced_files
from app.corpus.lock import writer_pid
from model.local_files import file_sha256

# Files already checked in this process: (path, sha256, inode, size, mtime_ns).
_VERIFIED: set[tuple] = set()


class Corpus:
    """A read-only snapshot of one corpus (its manifest when opened). Never locks: shard
    files are immutable, so a reader can work while a writer appends."""

    def __init__(self, directory: Path, manifest: dict):
        self.directory = directory
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.shards = [Shard(**entry) for entry in manifest["shards"]]
        self._firsts = [shard.first for shard in self.shards]

    def damaged(self, problem: str) -> CorpusDamaged:
        return CorpusDamaged(self.name, problem, self.manifest.get("sources") or ())

    def _checked(self, file: str, sha256: str, *, again: bool = False) -> str:
        """The path of `file` once its content matches `sha256` (hashed once per process
        while it stays the same file; `again` hashes it anyway)."""
        path = self.directory / file
        try:
            info = path.stat()
            key = (str(path), sha256, info.st_ino, info.st_size, info.st_mtime_ns)
            if again or key not in _VERIFIED:
                if file_sha256(path) != sha256:
                    raise self.damaged(f"{file} does not match its checksum")
                _VERIFIED.add(key)
        except FileNotFoundError:
            raise self._missing(file) from None
        return str(path)

    def _missing(self, file: str) -> CorpusError:
        """Damage if the corpus on disk still needs `file`; if a writer dropped it since this
        snapshot was opened (or the corpus was deleted), the snapshot is only out of date."""
        try:
            current = parse_manifest(self.name, (self.directory / MANIFEST).read_bytes())
        except FileNotFoundError:
            return CorpusChanged(f"corpus {self.name} was deleted while being read")
        except (OSError, CorpusDamaged):
            return self.damaged(f"{file} is missing")
        if file in referenced_files(current):
            return self.damaged(f"{file} is missing")
        return CorpusChanged(f"corpus {self.name} was rewritten while being read; try again")

    @property
    def segment_size(self) -> int:
        return self.manifest["model"]["segment_size"]

    @property
    def tokens(self) -> int:
        return self.manifest["tokens"]

    @property
    def segments(self) -> int:
        return self.manifest["segments"]

    @property
    def committed(self) -> int:
        """Segments whose memory is saved (== segments when the corpus is complete)."""
        return self.shards[-1].last + 1 if self.shards else 0

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    def _locate(self, segment: int) -> tuple[Shard, int]:
        if not 0 <= segment < self.committed:
            raise IndexError(f"segment {segment} not saved (0..{self.committed - 1})")
        shard = self.shards[bisect.bisect_right(self._firsts, segment) - 1]
        return shard, segment - shard.first

    def states(self, segments: Sequence[int]) -> torch.Tensor:
        """float16 memories after the given segments, as float32 (n, M, d)."""
        out: list[torch.Tensor | None] = [None] * len(segments)
        by_shard: dict[Shard, list[tuple[int, int]]] = {}
        for position, segment in enumerate(segments):
            shard, offset = self._locate(segment)
            by_shard.setdefault(shard, []).append((position, offset))
        for shard, wanted in by_shard.items():
            with safe_open(self._checked(shard.file, shard.sha256), "pt") as handle:
                view = handle.get_slice("states")
                for position, offset in wanted:
                    out[position] = view[offset : offset + 1][0]
        return torch.stack(out).float()  # type: ignore[arg-type]

    def exact_state(self, segment: int) -> torch.Tensor | None:
        """The float32 memory after `segment` if it ends a shard, else None."""
        if segment < 0 or segment >= self.committed:
            return None
        shard, offset = self._locate(segment)
        if offset != shard.count - 1:
            return None
        with safe_open(self._checked(shard.file, shard.sha256), "pt") as handle:
            return handle.get_tensor("exact")

    def final_state(self) -> torch.Tensor | None:
        """The exact memory after the last saved segment (None for an empty corpus)."""
        return self.exact_state(self.committed - 1) if self.shards else None

    def token_ids(self, start: int, end: int) -> list[int]:
        """Token ids of the stream [start, end) (within saved segments)."""
        size = self.segment_size
        ids: list[int] = []
        segment = start // size
        while start < end:
            shard, _ = self._locate(segment)
            shard_start = shard.first * size
            with safe_open(self._checked(shard.file, shard.sha256), "pt") as handle:
                view = handle.get_slice("tokens")
                stop = min(end, shard_start + view.get_shape()[0])
                ids.extend(view[start - shard_start : stop - shard_start].to(torch.int64).tolist())
            start, segment = stop, shard.last + 1
        return ids

    def intact_hashes(self) -> list[bytes]:
        """The hash chain saved by the leading shards whose files are intact: reading can
        restart right after the last of them (from its exact state)."""
        hashes: list[bytes] = []
        for shard in self.shards:
            try:
                path = self._checked(shard.file, shard.sha256)
            except CorpusDamaged:
                break
            with safe_open(path, "np") as handle:
                hashes.extend(bytes(row) for row in handle.get_tensor("hashes"))
        return hashes

    def documents(self) -> DocumentIndex:
        documents_file, lines_file = self.manifest["documents_file"], self.manifest["lines_file"]
        self._checked(documents_file, self.manifest["documents_sha256"])
        self._checked(lines_file, self.manifest["lines_sha256"])
        return DocumentIndex.load(self.directory, documents_file, lines_file)

    def verify(self) -> dict:
        """Check the corpus end to end (`rmtqa check`): every file against its checksum
        (hashed again), each shard's tensors against their shapes and its segment hashes
        against its tokens (the chain running on across shards), the documents against the
        token count, and the final memory against `memory_sha256`. Raises `CorpusDamaged`
        for the first problem; returns {"corpus", "files", "bytes", "segments_saved",
        "segments", "complete"}."""
        files = referenced_files(self.manifest)
        for file, sha256 in files.items():
            self._checked(file, sha256, again=True)
        if self.documents().total != self.tokens:
            raise self.damaged(f"{self.manifest['documents_file']} does not add up to its {self.tokens:,} tokens")
        model = self.manifest["model"]
        memory_shape = (model.get("num_mem_tokens"), model.get("hidden_size"))
        previous = CHAIN_SEED
        for shard in self.shards:
            with safe_open(self._checked(shard.file, shard.sha256), "np") as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            if set(tensors) != {"states", "exact", "hashes", "tokens"} or tensors["states"].shape != (shard.count, *memory_shape) \
                    or tensors["exact"].shape != memory_shape or tensors["hashes"].shape != (shard.count, 32):
                raise self.damaged(f"{shard.file} does not hold the tensors of {shard.count} segments")
            stored = [bytes(row) for row in tensors["hashes"]]
            if chain_hashes(tensors["tokens"], self.segment_size, seed=previous) != stored:
                raise self.damaged(f"{shard.file}: its segment hashes do not match its tokens")
            previous = stored[-1]
        if self.complete:
            final = self.final_state()
            if self.committed != self.segments or final is None or memory_sha256(final) != self.manifest.get("memory_sha256"):
                raise self.damaged("its final memory does not match memory_sha256")
        return {"corpus": self.name, "files": len(files), "bytes": self.bytes_on_disk(), "segments_saved": self.committed,
                "segments": self.segments, "complete": self.complete}

    def bytes_on_disk(self) -> int:
        return folder_bytes(self.directory)

    def summary(self) -> dict:
        """The `rmtqa corpora` entry."""
        size = self.bytes_on_disk()
        return {
            "name": self.name,
            "documents": self.manifest["files"],
            "tokens": self.tokens,
            "segments": self.segments,
            "model": self.manifest["model"]["dir"],
            "memory_sha256": self.manifest.get("memory_sha256"),
            "bytes": size,
            "bytes_per_token": round(size / self.tokens, 2) if self.tokens else None,
            "model_fingerprint": self.manifest["model"]["fingerprint"],
            "tokenizer": self.manifest["tokenizer"],
            "complete": self.complete,
            "writing": writer_pid(self.directory) is not None,
            "segments_saved": self.committed,
            "updated": self.manifest.get("updated"),
            "damaged": None,
        }
