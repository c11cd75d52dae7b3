"""All corpora under `$RMTQA_HOME/corpora`, and the one writer of each (the files they hold:
`app.corpus.format`; reading one: `app.corpus.snapshot`)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from app.corpus.errors import CorpusDamaged, CorpusError
from app.corpus.format import (
    CORPUS_NAME,
    FORMAT,
    LOCK,
    MANIFEST,
    STATE_DTYPE,
    Shard,
    atomic_write,
    folder_bytes,
    memory_sha256,
    parse_manifest,
    referenced_files,
    shard_segments,
    simulated_crash,
    validate_name,
)
from app.corpus.lock import CorpusLock, pid_alive, writer_pid
from app.corpus.snapshot import Corpus
from model.local_files import file_sha256

_REMOVING = re.compile(r"\..+\.removing-(\d+)-\d+")  # a corpus folder `remove` renamed away


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")



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
        return sorted(p.name for p in self.root.iterdir() if CORPUS_NAME.fullmatch(p.name) and p.is_dir() and (
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
        simulated_crash("removing", 1)
        shutil.rmtree(trash, ignore_errors=True)
        self.collect_removed()

    def collect_removed(self) -> None:
        """Delete the folders of corpora whose `rm` was killed after renaming them away
        (nothing else would ever find them again); those of live processes are theirs."""
        for entry in self.root.iterdir():
            match = _REMOVING.fullmatch(entry.name)
            if match and not pid_alive(int(match[1])) and entry.is_dir() and not entry.is_symlink():
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
        "bytes": folder_bytes(directory), "bytes_per_token": None, "model_fingerprint": None, "tokenizer": None,
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
              line_tokens: np.ndarray, line_chars: np.ndarray, offsets: np.ndarray, tokens: int, hashes: list[bytes],
              ocr: bool = False) -> dict:
        """Point the manifest at the new stream and keep the saved prefix that still holds;
        `ocr`: the stream was read with OCR (later ingests keep reading it so).

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
            "ocr": ocr,
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
        simulated_crash("shard-written", self.commits)
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
