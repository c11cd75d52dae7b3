"""On-disk corpora: memory states after every segment, resumable and incremental.

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

Integrity. The manifest records the sha256 of every file it references, and a file is
checked against it before anything is read from it (once per process while the file's
inode, size and mtime stay the same; `rmtqa check` re-hashes everything). A missing,
truncated or altered file, or an unreadable manifest, raises `CorpusDamaged`: one line
naming the corpus, the file and the command that repairs it. The next ingest repairs: it
keeps the leading shards that are intact, re-reads from the exact state that ends the last
of them, and rewrites a damaged documents or lines file; the result is the same corpus,
bit for bit, as a run that never saw the damage. A corpus whose manifest is unreadable is
still listed (`CorpusStore.summaries`, with `damaged`) so that it can be seen and deleted.

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

import bisect
import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from model.local_files import file_sha256

FORMAT = "rmtqa-corpus/2"  # 2: the manifest records the sha256 of every file it references
MANIFEST = "manifest.json"
LOCK = "lock"
STATE_DTYPE = torch.float16
DEFAULT_SHARD_SEGMENTS = 32
CHAIN_SEED = hashlib.sha256(b"rmtqa-corpus").digest()
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_REMOVING = re.compile(r"\..+\.removing-(\d+)-\d+")  # a corpus folder `remove` renamed away
MANIFEST_KEYS = {"name", "model", "tokenizer", "sources", "documents_file", "documents_sha256", "lines_file",
                 "lines_sha256", "files", "tokens", "segments", "shards", "complete"}


class CorpusError(Exception):
    """A problem the user can act on; its message is one clear line."""


class CorpusLocked(CorpusError):
    """Another process (or thread) is writing this corpus."""


class CorpusDamaged(CorpusError):
    """A file of a corpus is missing, truncated or altered, or its manifest is unreadable
    (`problem` says which). The message says how to repair (re-read) or delete it."""

    def __init__(self, name: str, problem: str, sources: Sequence[str] = ()):
        self.problem = problem
        paths = " ".join(shlex.quote(s) for s in sources[:3]) + (" ..." if len(sources) > 3 else "") if sources else "PATH..."
        super().__init__(f"corpus {name} is damaged ({problem}): `rmtqa ingest {paths} --corpus {name}` repairs it, `rmtqa rm {name}` deletes it")


class CorpusChanged(CorpusError, FileNotFoundError):
    """A writer replaced a file this snapshot points to while it was being read: open the
    corpus again (a `FileNotFoundError` too, for callers that retry on one)."""


def shard_segments() -> int:
    """Segments per shard (K). `RMTQA_SHARD_SEGMENTS` overrides it (tests use tiny shards)."""
    value = os.environ.get("RMTQA_SHARD_SEGMENTS")
    return max(1, int(value)) if value else DEFAULT_SHARD_SEGMENTS


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
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


# Files already checked in this process: (path, sha256, inode, size, mtime_ns).
_VERIFIED: set[tuple] = set()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _test_crash(point: str, count: int) -> None:
    """Test hook: `RMTQA_TEST_CRASH=shard-written:N` SIGKILLs this process after the N-th
    shard file of this run is durable but before the manifest points to it (the worst
    moment for a crash); `RMTQA_TEST_CRASH=removing:1` after `remove` renamed the corpus
    away but before it deleted it. Unset in normal use."""
    value = os.environ.get("RMTQA_TEST_CRASH")
    if value and value == f"{point}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- lock


class CorpusLock:
    """An exclusive, non-blocking `flock` on `NAME/lock` for the one writer of a corpus.

    The kernel drops the lock when its holder dies (kill -9 included), so a stale lock never
    needs cleaning up. The holder's pid is written into the file for the refusal message.
    """

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name
        self.handle = None

    def __enter__(self) -> "CorpusLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / LOCK, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                handle.close()
                raise
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise CorpusLocked(f"corpus {self.name} is being written by another process (pid {pid}); try again when it has finished") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            try:
                self.handle.seek(0)
                self.handle.truncate()
            except OSError:
                pass
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def writer_pid(directory: Path) -> int | None:
    """The pid of a live process writing this corpus, else None. Side-effect free (never
    touches the lock, so it cannot make a starting writer fail); a pid left by a killed
    writer is ignored because that process is gone."""
    try:
        pid = int((directory / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# --------------------------------------------------------------------------- reading


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


class DocumentIndex:
    """The records of a corpus's token stream and the provenance of any token range.

    Same conventions as `ingest.stream.CorpusStream.provenance` (which needs the live stream):
    a document's tokens start with its header (if any), then its lines; `lines` are 1-based
    file (or page) lines, `page` is set for PDF pages.
    """

    def __init__(self, records: list[dict], files: list[dict], skipped: list[dict], line_tokens: np.ndarray, line_chars: np.ndarray, offsets: np.ndarray):
        self.records, self.files, self.skipped = records, files, skipped
        self.starts = [record["token_start"] for record in records]
        self.line_tokens, self.line_chars, self.offsets = line_tokens, line_chars, offsets
        self.total = records[-1]["token_start"] + records[-1]["tokens"] if records else 0

    @classmethod
    def load(cls, directory: Path, documents_file: str, lines_file: str) -> "DocumentIndex":
        data = json.loads((directory / documents_file).read_text())
        with safe_open(str(directory / lines_file), "np") as handle:
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}
        return cls(data["records"], data["files"], data["skipped"], arrays["line_tokens"], arrays["line_chars"], arrays["offsets"])

    def record_at(self, token: int) -> int:
        return max(bisect.bisect_right(self.starts, token) - 1, 0)

    def boundaries(self, start: int, end: int) -> list[int]:
        """Token positions strictly inside (start, end) where a document begins."""
        index = bisect.bisect_right(self.starts, start)
        found = []
        while index < len(self.starts) and self.starts[index] < end:
            found.append(self.starts[index])
            index += 1
        return found

    def provenance(self, start: int, end: int) -> list[dict]:
        """One dict per document that tokens [start, end) touch: path, page, kind, lines
        (first, last), chars (offsets in the file's or page's text), tokens (first, end)."""
        found = []
        index = self.record_at(start)
        while index < len(self.records) and self.records[index]["token_start"] < end:
            record = self.records[index]
            first = max(start, record["token_start"])
            last = min(end, record["token_start"] + record["tokens"])
            if last > first:
                found.append(self._describe(index, first, last))
            index += 1
        return found

    def _describe(self, index: int, first: int, last: int) -> dict:
        record = self.records[index]
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        offsets, chars = self.line_tokens[lo:hi], self.line_chars[lo:hi]
        lines = (record["line_start"], record["line_end"])
        span = None
        if len(offsets) >= 2:
            top = len(offsets) - 2
            body = record["token_start"] + record.get("header_tokens", 0)
            a = min(int(np.searchsorted(offsets, max(first - body, 0), side="right")) - 1, top)
            b = min(int(np.searchsorted(offsets, max(last - 1 - body, 0), side="right")) - 1, top)
            lines = (record["line_start"] + a, record["line_start"] + b)
            span = (record.get("char_offset", 0) + int(chars[a]), record.get("char_offset", 0) + int(chars[b + 1]))
            # The token range of those whole lines, for an excerpt that starts at a line.
            line_tokens = (body + int(offsets[a]), body + int(offsets[b + 1]))
        else:
            line_tokens = (first, last)
        return {
            "path": record["path"], "page": record["page"], "kind": record["kind"], "lines": lines,
            "chars": span, "tokens": (first, last), "line_tokens": line_tokens,
        }

    def resolve_as_of(self, as_of: str) -> tuple[int, str]:
        """(end token, label) for `path` or `path#page=N`: the stream up to the end of that
        document (for a paged file without a page: its last page). A path may be given in
        full or as a unique suffix (e.g. the file name)."""
        path, _, page_text = as_of.partition("#page=")
        page = None
        if page_text:
            if not page_text.isdigit():
                raise CorpusError(f"bad page in --as-of {as_of!r} (expected PATH#page=N)")
            page = int(page_text)
        exact = [r for r in self.records if r["path"] in (path, os.path.abspath(path))]
        if not exact:
            norm = re.sub(r"^(\./)+", "", path.replace(os.sep, "/"))
            candidates = sorted({r["path"] for r in self.records if r["path"].endswith("/" + norm) or r["path"] == norm})
            if len(candidates) > 1:
                raise CorpusError(f"--as-of {path!r} matches {len(candidates)} documents ({', '.join(candidates[:3])}...): give more of the path")
            exact = [r for r in self.records if candidates and r["path"] == candidates[0]]
        if not exact:
            raise CorpusError(f"no document {path!r} in this corpus (`rmtqa corpora` lists corpora; documents are listed in the ingest report)")
        if page is not None:
            exact = [r for r in exact if r["page"] == page]
            if not exact:
                raise CorpusError(f"{path} has no page {page} in this corpus")
        record = exact[-1]
        label = record["path"] + (f"#page={record['page']}" if page is not None else "")
        return record["token_start"] + record["tokens"], label


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
        return _folder_bytes(self.directory)

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


# --------------------------------------------------------------------------- the store


class CorpusStore:
    """All corpora under `home/corpora`."""

    def __init__(self, home: str | Path):
        self.home = Path(home).expanduser()
        self.root = self.home / "corpora"

    def directory(self, name: str) -> Path:
        return self.root / validate_name(name)

    def names(self) -> list[str]:
        """Every corpus folder: with a manifest, or left without one (shown as damaged)
        unless a writer is creating it. Collects what a killed `rm` left (see
        `collect_removed`) on the way."""
        if not self.root.is_dir():
            return []
        self.collect_removed()
        return sorted(p.name for p in self.root.iterdir() if _NAME.fullmatch(p.name) and p.is_dir() and (
            (p / MANIFEST).is_file() or _orphaned(p)))

    def summary(self, name: str) -> dict:
        """`Corpus.summary()` of `name`; for a corpus that is too damaged to open, one that
        lets it be seen and deleted: zero counts, "state": "damaged" and "damaged": the
        one-line problem (null for a sound corpus)."""
        try:
            return self.open(name).summary()
        except CorpusDamaged as error:
            return _damaged_summary(name, self.directory(name), str(error))

    def summaries(self) -> list[dict]:
        """`summary` of every corpus, by name (damaged ones included)."""
        out = []
        for name in self.names():
            try:
                out.append(self.summary(name))
            except (CorpusError, FileNotFoundError):  # deleted meanwhile
                continue
        return out

    def exists(self, name: str) -> bool:
        return (self.directory(name) / MANIFEST).is_file()

    def read_manifest(self, name: str) -> dict | None:
        """The manifest of `name`, None if it has none; `CorpusDamaged` if it is unreadable."""
        try:
            text = (self.directory(name) / MANIFEST).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise CorpusDamaged(name, f"its manifest cannot be read: {error.strerror or error}") from None
        return parse_manifest(name, text)

    def open(self, name: str) -> Corpus:
        manifest = self.read_manifest(name)
        if manifest is None:
            if self.directory(name).is_dir() and _orphaned(self.directory(name)):
                raise CorpusDamaged(name, "its manifest is missing")
            known = ", ".join(self.names()) or "none yet"
            raise CorpusError(f"no corpus named {name} (corpora: {known}); create it with `rmtqa ingest PATH --corpus {name}`")
        return Corpus(self.directory(name), manifest)

    def check(self, name: str) -> dict:
        """Verify a corpus end to end (`Corpus.verify`); `CorpusDamaged` names the problem."""
        return self.open(name).verify()

    def writer(self, name: str) -> "CorpusWriter":
        return CorpusWriter(self, validate_name(name))

    def remove(self, name: str) -> None:
        directory = self.directory(name)
        if not directory.is_dir():
            raise CorpusError(f"no corpus named {name}")
        with CorpusLock(directory, name):
            trash = self.root / f".{name}.removing-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(directory, trash)  # atomic: the corpus is gone or intact
        _test_crash("removing", 1)
        shutil.rmtree(trash, ignore_errors=True)
        self.collect_removed()

    def collect_removed(self) -> None:
        """Delete the folders of corpora whose `rm` was killed after renaming them away
        (nothing else would ever find them again); those of live processes are theirs."""
        for entry in self.root.iterdir():
            match = _REMOVING.fullmatch(entry.name)
            if match and not _pid_alive(int(match[1])) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def _orphaned(directory: Path) -> bool:
    """A corpus folder holding files but no manifest, that no live writer is creating."""
    try:
        return writer_pid(directory) is None and any(entry.name != LOCK for entry in directory.iterdir())
    except OSError:  # deleted meanwhile
        return False


def _damaged_summary(name: str, directory: Path, problem: str) -> dict:
    return {
        "name": name, "state": "damaged", "documents": 0, "tokens": 0, "segments": 0, "model": None, "memory_sha256": None,
        "bytes": _folder_bytes(directory), "bytes_per_token": None, "model_fingerprint": None, "tokenizer": None,
        "complete": False, "writing": writer_pid(directory) is not None, "segments_saved": 0, "updated": None, "damaged": problem,
    }


class CorpusWriter:
    """The one writer of a corpus (holds its lock from `__enter__` to `__exit__`).

    Protocol: `begin(...)` with the new stream (decides where reading restarts and drops
    what changed), `commit(...)` for each shard as reading goes, `finish(...)` at the end.
    """

    def __init__(self, store: CorpusStore, name: str):
        self.store, self.name = store, name
        self.directory = store.directory(name)
        self.lock = CorpusLock(self.directory, name)
        self.manifest: dict | None = None
        self.unreadable: str | None = None  # why the old manifest could not be used
        self.commits = 0

    def __enter__(self) -> "CorpusWriter":
        self.lock.__enter__()
        try:
            self.manifest = self.store.read_manifest(self.name)
        except CorpusDamaged as error:
            self.manifest, self.unreadable = None, error.problem  # rebuilt from scratch
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.manifest is None:  # nothing was ever written: leave no empty corpus behind
                leftovers = [p for p in self.directory.iterdir() if p.name != LOCK]
                if not leftovers:
                    shutil.rmtree(self.directory, ignore_errors=True)
        finally:
            self.lock.__exit__(*exc)

    # ---------------------------------------------------------------- protocol

    def begin(self, *, model: dict, tokenizer: str, sources: list[str], records: list[dict], files: list[dict], skipped: list[dict],
              line_tokens: np.ndarray, line_chars: np.ndarray, offsets: np.ndarray, tokens: int, hashes: list[bytes]) -> dict:
        """Point the manifest at the new stream and keep the saved prefix that still holds.

        Returns {"start": first segment to read, "first_changed": first segment whose
        content differs from what was saved, "rebuilt": reason or None}.
        """
        old = self.manifest
        rebuilt = self.unreadable
        kept: list[Shard] = []
        first_changed = 0
        if old is not None:
            rebuilt = _incompatible(old, model, tokenizer)
            if rebuilt is None:
                corpus = Corpus(self.directory, old)
                stored = corpus.intact_hashes()  # a damaged shard ends what can be kept
                first_changed = next((j for j, (a, b) in enumerate(zip(stored, hashes)) if a != b), min(len(stored), len(hashes)))
                kept = [shard for shard in corpus.shards if shard.last < first_changed]
        documents = json.dumps({"records": records, "files": files, "skipped": skipped, "tokenizer": tokenizer}, ensure_ascii=False).encode()
        documents_sha256 = hashlib.sha256(documents).hexdigest()
        documents_file, lines_file = f"documents-{documents_sha256[:16]}.json", f"lines-{documents_sha256[:16]}.safetensors"
        arrays = {"line_tokens": torch.from_numpy(line_tokens.astype(np.int32)), "line_chars": torch.from_numpy(line_chars.astype(np.int32)), "offsets": torch.from_numpy(offsets.astype(np.int64))}
        lines = safetensors_bytes(arrays)
        lines_sha256 = hashlib.sha256(lines).hexdigest()
        self._write_unless_intact(documents_file, documents, documents_sha256)
        self._write_unless_intact(lines_file, lines, lines_sha256)
        segment_size = model["segment_size"]
        self.manifest = {
            "format": FORMAT,
            "name": self.name,
            "model": model,
            "tokenizer": tokenizer,
            "state_dtype": str(STATE_DTYPE).removeprefix("torch."),
            "shard_segments": shard_segments(),
            "sources": sources,
            "documents_file": documents_file,
            "documents_sha256": documents_sha256,
            "lines_file": lines_file,
            "lines_sha256": lines_sha256,
            "files": len(files),
            "tokens": tokens,
            "segments": -(-tokens // segment_size),
            "shards": [shard.to_dict() for shard in kept],
            "complete": False,
            "memory_sha256": None,
            "created": (old or {}).get("created") or _now() if rebuilt is None else _now(),
            "updated": _now(),
        }
        if kept and kept[-1].last + 1 == self.manifest["segments"] and len(hashes) == kept[-1].last + 1:
            self.manifest["complete"] = True  # nothing changed at all
            state = Corpus(self.directory, self.manifest).final_state()
            self.manifest["memory_sha256"] = memory_sha256(state) if state is not None else None
        self._write_manifest()
        self.collect_garbage()
        start = kept[-1].last + 1 if kept else 0
        return {"start": start, "first_changed": first_changed, "rebuilt": rebuilt}

    def corpus(self) -> Corpus:
        assert self.manifest is not None
        return Corpus(self.directory, self.manifest)

    def commit(self, first: int, states: Sequence[torch.Tensor], exact: torch.Tensor, hashes: Sequence[bytes], token_ids: np.ndarray, vocab_size: int) -> None:
        """Save segments first..first+len(states)-1: the shard file, then the manifest."""
        assert self.manifest is not None and states
        count = len(states)
        token_dtype = torch.int16 if vocab_size <= 32767 else torch.int32
        tensors = {
            "states": torch.stack([s.detach().reshape(s.shape[-2:]).to("cpu", STATE_DTYPE) for s in states]).contiguous(),
            "exact": exact.detach().reshape(exact.shape[-2:]).to("cpu", torch.float32).contiguous(),
            "hashes": torch.from_numpy(np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(count, 32).copy()),
            "tokens": torch.from_numpy(np.asarray(token_ids, dtype=np.int64)).to(token_dtype),
        }
        file = f"shard-{first:08d}-{hashes[-1].hex()[:16]}.safetensors"
        data = safetensors_bytes(tensors, metadata={"first": str(first), "count": str(count)})
        atomic_write(self.directory / file, data)
        self.commits += 1
        _test_crash("shard-written", self.commits)
        shards = [entry for entry in self.manifest["shards"] if entry["first"] < first]
        shards.append(Shard(file, first, count, hashlib.sha256(data).hexdigest()).to_dict())
        self.manifest["shards"] = shards
        self.manifest["updated"] = _now()
        self._write_manifest()

    def finish(self, final_state: torch.Tensor | None) -> None:
        assert self.manifest is not None
        saved = self.manifest["shards"][-1]["first"] + self.manifest["shards"][-1]["count"] if self.manifest["shards"] else 0
        self.manifest["complete"] = saved == self.manifest["segments"]
        self.manifest["memory_sha256"] = memory_sha256(final_state) if final_state is not None and self.manifest["complete"] else None
        self.manifest["updated"] = _now()
        self._write_manifest()
        self.collect_garbage()

    # ---------------------------------------------------------------- helpers

    def _write_manifest(self) -> None:
        atomic_write(self.directory / MANIFEST, json.dumps(self.manifest, indent=1).encode())

    def _write_unless_intact(self, file: str, data: bytes, sha256: str) -> None:
        """Write `file` unless it already holds exactly `data` (a damaged copy is replaced)."""
        path = self.directory / file
        try:
            if file_sha256(path) == sha256:
                return
        except FileNotFoundError:
            pass
        atomic_write(path, data)

    def collect_garbage(self) -> None:
        """Delete files the manifest does not reference (dropped shards, old documents,
        temporary files of a crashed write). Readers holding an older snapshot keep what
        they opened (POSIX) and retry on a missing file."""
        if self.manifest is None:
            return
        keep = {MANIFEST, LOCK, *referenced_files(self.manifest)}
        for entry in self.directory.iterdir():
            if entry.name not in keep and entry.is_file():
                try:
                    entry.unlink()
                except OSError:
                    pass


def _folder_bytes(directory: Path) -> int:
    return sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())


def _incompatible(old: dict, model: dict, tokenizer: str) -> str | None:
    """Why saved states cannot be reused with this model, or None."""
    if old.get("format") != FORMAT:
        return "unknown corpus format"
    if old["model"]["fingerprint"] != model["fingerprint"]:
        return f"it was read with another model ({old['model']['fingerprint'][:19]} from {old['model']['dir']}, now {model['fingerprint'][:19]})"
    if old["tokenizer"] != tokenizer:
        return f"it was read with another tokenizer ({old['tokenizer']}, now {tokenizer})"
    for key in ("segment_size", "num_mem_tokens", "hidden_size"):
        if old["model"].get(key) != model.get(key):
            return f"the model's {key} changed ({old['model'].get(key)} -> {model.get(key)})"
    return None


def concat_line_arrays(records: Iterable[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-line cumulative token/char counts of `ingest.stream.DocumentRecord`s, concatenated,
    with `offsets` (len(records) + 1) into them."""
    tokens, chars, offsets = [], [], [0]
    for record in records:
        lt = np.frombuffer(record.line_tokens, dtype=np.uint32) if record.line_tokens is not None else np.zeros(0, np.uint32)
        lc = np.frombuffer(record.line_chars, dtype=np.uint32) if record.line_chars is not None else np.zeros(0, np.uint32)
        tokens.append(lt)
        chars.append(lc)
        offsets.append(offsets[-1] + len(lt))
    cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(tokens), cat(chars), np.asarray(offsets, dtype=np.int64)
