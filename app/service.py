"""The corpus service: everything the CLI, the web UI, scripts and benchmarks do with corpora.

UI-agnostic: no printing, progress through callbacks, cancellation through a
`threading.Event`, plain dicts out (JSON-ready). One `CorpusService` loads each model once
and is safe to share between threads: any number of `ask`s (also while an `ingest` runs in
another thread; they answer from the last saved segment) and at most one writer per corpus
(a second is refused with `CorpusLocked`, in this process or any other).

Public API (dict shapes in each docstring)::

    service = CorpusService(home=None, model_dir=None)
    service.ingest(paths, corpus, *, progress=None, cancel=None) -> report
    service.remove_documents(corpus, paths, *, progress=None, cancel=None) -> report
    service.ask(corpus, question, *, as_of=None, ...) -> answer
    service.ask_stream(corpus, question, *, as_of=None, ...) -> iterator of events
    service.list_corpora() -> [summary];  service.corpus(corpus) -> summary
    service.documents(corpus) -> [document];  service.remove(corpus) -> None

Errors a user can act on raise `CorpusError` (one clear line); `CorpusLocked` is one.

Model choice. Ingest reads with `model_dir` if given; else an existing corpus keeps the
model it was read with (while its files are unchanged), and a new one gets the shipped
`assets/default`. A corpus records the fingerprint of its model (sha256 of config.json +
model.safetensors) and of its tokenizer; ingesting with a different model or tokenizer
REBUILDS the corpus from scratch, announced in the report (`"rebuilt": reason`; the CLI
also prints a note) -- old and new states never mix. Asking uses `model_dir` if given (and
refuses, naming the command that rebuilds, when it is not the corpus's model), else the
directory the corpus was read with, else the shipped model, whichever has the right
fingerprint.

Sources of a corpus. The paths given to `ingest` accumulate: ingesting more paths into a
corpus appends them (re-scanning the earlier ones, so edited files are noticed too);
`remove_documents` drops paths. Every run re-reads the files, rebuilds the token stream
(deterministic), and compares its segment hash chain with the saved one: reading restarts
at the nearest exact state at or before the first changed segment (see
`app.corpus_store`). So the same command after a crash resumes, an append reads only the
new segments, and a change re-reads from the changed segment (at most K-1 segments
earlier, K = segments per shard).
"""
from __future__ import annotations

import hashlib
import os
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from app.corpus_store import (
    STATE_DTYPE,
    Corpus,
    CorpusError,
    CorpusLocked,
    CorpusStore,
    DocumentIndex,
    chain_hashes,
    concat_line_arrays,
    shard_segments,
    validate_name,
)
from app.paths import default_model_dir, rmtqa_home
from app.sources import cut_points, find_rises

__all__ = ["CorpusService", "CorpusError", "CorpusLocked", "model_fingerprint"]

Progress = Callable[[dict], None]
EXCERPT_CHARS = 300


# --------------------------------------------------------------------------- models


_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


def model_fingerprint(model_dir: str | Path) -> str:
    """"sha256:<hex>" over config.json and model.safetensors (cached by size and mtime)."""
    model_dir = Path(model_dir)
    files = [model_dir / "config.json", model_dir / "model.safetensors"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CorpusError(f"no RMT model in {model_dir} (missing {', '.join(missing)}); train one or pass --model DIR")
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    with _FINGERPRINT_LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    value = "sha256:" + digest.hexdigest()
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[key] = value
    return value


@dataclass
class LoadedModel:
    """A reader model and its tokenizer. `model` needs only the reader protocol used here:
    `config.segment_size`, `initial_memory(batch)`, `read(ids, attention_mask=, memory=)`,
    `generate(memory, prompt_ids, max_new_tokens, eos_id, temperature, top_p)` and
    `score(memories, prompt_ids, target_ids, batch_size)` (see `model.rmt`)."""

    directory: Path
    fingerprint: str
    model: Any
    tokenizer: Any

    @property
    def segment_size(self) -> int:
        return int(self.model.config.segment_size)

    def initial_memory(self) -> torch.Tensor:
        return self.model.initial_memory(1)[0].detach().to("cpu", torch.float32)

    def info(self) -> dict:
        memory = self.initial_memory()
        return {
            "dir": str(self.directory),
            "fingerprint": self.fingerprint,
            "segment_size": self.segment_size,
            "num_mem_tokens": int(memory.shape[0]),
            "hidden_size": int(memory.shape[1]),
        }


# --------------------------------------------------------------------------- service


class CorpusService:
    """Corpora under `home` (default `$RMTQA_HOME` or ~/.rmtqa), read with `model_dir`.

    `model` injects an already loaded reader for `model_dir` (tests, benchmarks); its
    fingerprint is still that of the files in `model_dir`.
    """

    def __init__(self, home: str | Path | None = None, model_dir: str | Path | None = None, *, model: Any = None):
        self.home = Path(home).expanduser() if home is not None else rmtqa_home()
        self.store = CorpusStore(self.home)
        self.model_dir = Path(model_dir).expanduser().absolute() if model_dir is not None else None
        self._injected = model
        self._models: dict[str, LoadedModel] = {}
        self._documents: dict[tuple[str, str], DocumentIndex] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------ models

    def load_model(self, model_dir: str | Path | None = None) -> LoadedModel:
        """The model in `model_dir` (default: this service's, else the shipped one), loaded once."""
        directory = Path(model_dir).expanduser().absolute() if model_dir is not None else (self.model_dir or default_model_dir())
        fingerprint = model_fingerprint(directory)
        with self._lock:
            loaded = self._models.get(fingerprint)
            if loaded is None:
                from model.tokenizer import load_tokenizer

                tokenizer = load_tokenizer(directory)
                if self._injected is not None and self.model_dir is not None and directory == self.model_dir:
                    model = self._injected
                else:
                    from model.rmt import RecurrentMemoryTransformer

                    model = RecurrentMemoryTransformer.from_pretrained(directory)
                loaded = self._models[fingerprint] = LoadedModel(directory, fingerprint, model, tokenizer)
            return loaded

    def _model_for(self, corpus: Corpus) -> LoadedModel:
        recorded = corpus.manifest["model"]
        want = recorded["fingerprint"]
        if self.model_dir is not None:
            candidates = [self.model_dir]
        else:
            candidates = [Path(recorded["dir"]), default_model_dir()]
        for directory in candidates:
            try:
                if model_fingerprint(directory) == want:
                    return self.load_model(directory)
            except CorpusError:
                continue
        sources = corpus.manifest.get("sources") or ["PATH"]
        paths = " ".join(shlex.quote(s) for s in sources[:3]) + (" ..." if len(sources) > 3 else "")
        given = f"the model in {candidates[0]} is a different one" if self.model_dir is not None else f"that model ({recorded['dir']}) is gone or has changed"
        raise CorpusError(
            f"corpus {corpus.name} was read with model {want[:19]}; {given}: rebuild it with "
            f"`rmtqa ingest {paths} --corpus {corpus.name} --model DIR`"
        )

    def _ingest_model(self, manifest: dict | None) -> LoadedModel:
        """The model to read with: this service's `model_dir` if given; else, for an existing
        corpus, the model it was read with while that is unchanged; else the shipped one."""
        if self.model_dir is None and manifest is not None:
            recorded = manifest.get("model", {})
            try:
                if model_fingerprint(recorded.get("dir", "")) == recorded.get("fingerprint"):
                    return self.load_model(recorded["dir"])
            except (CorpusError, OSError):
                pass
        return self.load_model()

    def _document_index(self, corpus: Corpus) -> DocumentIndex:
        key = (str(corpus.directory), corpus.manifest["documents_file"])
        with self._lock:
            index = self._documents.get(key)
        if index is None:
            index = corpus.documents()
            with self._lock:
                self._documents[key] = index
        return index

    # ------------------------------------------------------------ corpora

    def list_corpora(self) -> list[dict]:
        """One summary per corpus, by name: {"name", "documents" (files), "tokens",
        "segments", "model" (directory it was read with), "memory_sha256" (of the final
        float32 memory; null until complete), "bytes", "bytes_per_token",
        "model_fingerprint", "tokenizer", "complete", "writing" (an ingest is running),
        "segments_saved", "updated"}."""
        out = []
        for name in self.store.names():
            try:
                out.append(self.store.open(name).summary())
            except (CorpusError, FileNotFoundError, ValueError):
                continue
        return out

    def corpus(self, corpus: str) -> dict:
        """The summary of one corpus (as in `list_corpora`) plus its "sources"."""
        snapshot = self.store.open(corpus)
        return {**snapshot.summary(), "sources": list(snapshot.manifest.get("sources", []))}

    def documents(self, corpus: str) -> list[dict]:
        """The files of a corpus in reading order, for an as-of selector: [{"path", "kind",
        "pages" (int or null), "tokens", "token_start", "segment_start", "segment_end",
        "saved" (bool: its memory is saved)}]. Pass `path` (or `path#page=N`) as `as_of`."""
        snapshot = self.store.open(corpus)
        index = self._document_index(snapshot)
        size = snapshot.segment_size
        out = []
        for entry in index.files:
            end = entry["token_start"] + entry["tokens"]
            out.append({
                "path": entry["path"], "kind": entry["kind"], "pages": entry["pages"], "tokens": entry["tokens"],
                "token_start": entry["token_start"], "segment_start": entry["token_start"] // size,
                "segment_end": (end - 1) // size, "saved": end <= snapshot.committed * size or (snapshot.complete and end <= snapshot.tokens),
            })
        return out

    def remove(self, corpus: str) -> None:
        """Delete a corpus (refused with `CorpusLocked` while it is being written)."""
        self.store.remove(corpus)
        with self._lock:
            self._documents = {k: v for k, v in self._documents.items() if Path(k[0]).name != corpus}

    # ------------------------------------------------------------ ingest

    def ingest(self, paths: Iterable[str | Path], corpus: str, *, progress: Progress | None = None, cancel: threading.Event | None = None) -> dict:
        """Read `paths` into `corpus` (created if new; appended to its earlier paths if not).

        Returns the ingest report: the dry-run report's {"documents": [{"path", "kind",
        "pages", "documents", "tokens", "chars", "token_start"}], "skipped": [{"path",
        "reason", "page"?}], "tokens", "seconds", "tokenizer"} plus {"corpus", "segments",
        "segments_read", "first_segment_read", "first_changed_segment", "rebuilt" (reason or
        null), "complete", "cancelled", "bytes", "bytes_per_token", "tokens_per_s" (reading
        rate), "read_seconds", "scan_seconds", "memory_sha256", "model", "sources"}.

        `progress(event)` gets {"phase": "scan", "path", "documents", "tokens"} per document,
        then {"phase": "read", "segments_done", "segments_total", "segments_read",
        "segments_to_read", "tokens_read", "tokens_to_read", "tokens_per_s", "eta_s"} per
        segment. `cancel.set()` stops after the current segment, saving what was read (the
        next ingest resumes there); the report then has "cancelled": true.
        """
        new = [os.path.abspath(os.fspath(p)) for p in paths]
        if not new:
            raise CorpusError("nothing to ingest: give at least one PATH")
        return self._update(corpus, lambda old: old + [p for p in dict.fromkeys(new) if p not in old], progress, cancel)

    def remove_documents(self, corpus: str, paths: Iterable[str | Path], *, progress: Progress | None = None, cancel: threading.Event | None = None) -> dict:
        """Drop paths (as given to `ingest`) from a corpus and re-read from the first affected
        segment. Returns the ingest report (above)."""
        snapshot = self.store.open(corpus)
        sources = list(snapshot.manifest.get("sources", []))
        drop = []
        for path in paths:
            full = os.path.abspath(os.fspath(path))
            if full not in sources:
                inside = [s for s in sources if full.startswith(s.rstrip("/") + "/")]
                hint = f"; it is inside {inside[0]} (delete it there and ingest again)" if inside else ""
                raise CorpusError(f"{path} is not one of the paths of corpus {corpus}{hint}")
            drop.append(full)
        if len(drop) == len(sources):
            raise CorpusError(f"that would remove every document of corpus {corpus}; use `rmtqa rm {corpus}` to delete it")
        return self._update(corpus, lambda old: [s for s in old if s not in drop], progress, cancel, must_exist=True)

    def _update(self, corpus: str, new_sources: Callable[[list[str]], list[str]], progress: Progress | None, cancel: threading.Event | None, must_exist: bool = False) -> dict:
        from ingest.pipeline import ingest_paths
        from ingest.stream import DocumentRecord

        started = time.perf_counter()
        validate_name(corpus)
        with self.store.writer(corpus) as writer:
            old = writer.manifest
            if must_exist and old is None:
                raise CorpusError(f"no corpus named {corpus}")
            loaded = self._ingest_model(old)
            size = loaded.segment_size
            scan_started = time.perf_counter()
            sources = new_sources(list(old.get("sources", [])) if old else [])
            scanned = {"documents": 0, "tokens": 0}

            def on_document(result: Any) -> None:
                if isinstance(result, DocumentRecord):
                    scanned["documents"] += 1
                    scanned["tokens"] += result.tokens
                if progress is not None:
                    progress({"phase": "scan", "path": result.path, **scanned})

            report, stream = ingest_paths(sources, loaded.tokenizer, progress=on_document)
            if not stream.records:
                first = report.skipped[0] if report.skipped else None
                why = f" ({first.path}: {first.reason})" if first else ""
                raise CorpusError(f"nothing readable to put in corpus {corpus}{why}")
            scan_seconds = time.perf_counter() - scan_started
            tokens = np.frombuffer(stream.tokens, dtype=np.uint32)
            hashes = chain_hashes(tokens, size)
            line_tokens, line_chars, offsets = concat_line_arrays(stream.records)
            report_dict = report.to_dict()
            plan = writer.begin(
                model=loaded.info(), tokenizer=getattr(loaded.tokenizer, "fingerprint", type(loaded.tokenizer).__name__),
                sources=sources, records=[_record_json(r) for r in stream.records], files=report_dict["documents"],
                skipped=report_dict["skipped"], line_tokens=line_tokens, line_chars=line_chars, offsets=offsets,
                tokens=len(tokens), hashes=hashes,
            )
            read = self._read(writer, loaded, tokens, hashes, plan["start"], progress, cancel)
            writer.finish(read["memory"] if not read["cancelled"] else None)
            snapshot = writer.corpus()
        size_bytes = snapshot.bytes_on_disk()
        return {
            **report_dict,
            "corpus": corpus,
            "segments": len(hashes),
            "segments_read": read["segments_read"],
            "first_segment_read": plan["start"],
            "first_changed_segment": plan["first_changed"],
            "rebuilt": plan["rebuilt"],
            "complete": snapshot.complete,
            "cancelled": read["cancelled"],
            "bytes": size_bytes,
            "bytes_per_token": round(size_bytes / len(tokens), 2),
            "tokens_per_s": round(read["tokens_read"] / read["seconds"], 1) if read["seconds"] > 0 else None,
            "read_seconds": round(read["seconds"], 3),
            "scan_seconds": round(scan_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3),
            "memory_sha256": snapshot.manifest.get("memory_sha256"),
            "model": str(loaded.directory),
            "sources": sources,
        }

    def _read(self, writer, loaded: LoadedModel, tokens: np.ndarray, hashes: list[bytes], start: int, progress: Progress | None, cancel: threading.Event | None) -> dict:
        """Read segments start..N-1, committing a shard every K segments and right after the
        last full segment (so that an append never re-reads old segments)."""
        size, total, count = loaded.segment_size, len(tokens), len(hashes)
        last_full = count - 1 if total % size == 0 else count - 2
        per_shard = shard_segments()
        vocab = int(getattr(loaded.tokenizer, "vocab_size", 1 << 31))
        memory = loaded.initial_memory() if start == 0 else writer.corpus().exact_state(start - 1)
        assert memory is not None, "a restart point always has an exact state"
        segment, first, buffer = start, start, []
        tokens_to_read = total - start * size
        tokens_read, cancelled = 0, False
        began = time.perf_counter()

        def commit() -> None:
            nonlocal first, buffer
            pending, buffer = buffer, []  # never committed twice, even if writing fails
            if pending:
                writer.commit(first, pending, memory, hashes[first:segment], tokens[first * size : min(segment * size, total)], vocab)
            first = segment

        try:
            while segment < count and not cancelled:
                end = min(first + per_shard - 1, count - 1)
                if first <= last_full < end:
                    end = last_full
                chunk = torch.from_numpy(tokens[segment * size : min((end + 1) * size, total)].astype(np.int64))
                for state in loaded.model.read(chunk[None], memory=memory[None]):
                    memory = state[0]
                    buffer.append(memory.to(STATE_DTYPE))
                    tokens_read += min(size, total - segment * size)
                    segment += 1
                    if progress is not None:
                        elapsed = time.perf_counter() - began
                        rate = tokens_read / elapsed if elapsed > 0 else 0.0
                        progress({
                            "phase": "read", "segments_done": segment, "segments_total": count,
                            "segments_read": segment - start, "segments_to_read": count - start,
                            "tokens_read": tokens_read, "tokens_to_read": tokens_to_read,
                            "tokens_per_s": rate, "eta_s": (tokens_to_read - tokens_read) / rate if rate else None,
                        })
                    if cancel is not None and cancel.is_set():
                        cancelled = True
                        break
                commit()
        except BaseException:
            commit()  # keep every complete segment (Ctrl-C, errors): the next run resumes here
            raise
        return {"memory": memory, "segments_read": segment - start, "tokens_read": tokens_read,
                "seconds": time.perf_counter() - began, "cancelled": cancelled and segment < count}

    # ------------------------------------------------------------ asking

    def ask(self, corpus: str, question: str, **options: Any) -> dict:
        """Answer `question` from the corpus's memory. Options as for `ask_stream`.

        Returns {"answer", "sources": [{"path", "page" (int for paged documents, else
        null), "lines": [first, last], "excerpt" (<= 300 chars), "score" (rise of the
        answer's log-likelihood over that segment), "segment", "tokens": [start, end]}],
        "seconds", "corpus", "as_of" (label or null), "segment" (the memory is the one after
        this segment), "segments", "complete"}.
        """
        result = None
        for event in self.ask_stream(corpus, question, **options):
            if event["type"] == "result":
                result = event
        assert result is not None
        return {k: v for k, v in result.items() if k != "type"}

    def ask_stream(self, corpus: str, question: str, *, as_of: str | int | None = None, max_new_tokens: int = 48,
                   temperature: float = 0.0, top_p: float = 1.0, sources: bool = True, top_k: int = 3,
                   cancel: threading.Event | None = None) -> Iterator[dict]:
        """Yield {"type": "token", "text"} as the answer is generated, then one
        {"type": "result", ...} with the fields of `ask` (sources are found after the answer).

        `as_of`: None (the final memory), a segment index (int, "segment:N" or "N": the
        memory after that segment), or a document: its path as listed by `documents` (or a
        unique suffix such as the file name), optionally "#page=N" -- the memory after
        exactly its last token. `cancel.set()` stops generation early.
        """
        from model.tasks import QUESTION_TEMPLATE

        started = time.perf_counter()
        if not question or not question.strip():
            raise CorpusError("the question is empty")
        snapshot = self.store.open(corpus)
        if snapshot.committed == 0:
            raise CorpusError(f"corpus {corpus} has no saved memory yet: run `rmtqa ingest ... --corpus {corpus}`")
        loaded = self._model_for(snapshot)
        target = self._answer_memory(snapshot, loaded, as_of)
        tokenizer = loaded.tokenizer
        prompt = tokenizer.encode(QUESTION_TEMPLATE.format(question=question.strip()))
        ids: list[int] = []
        text = ""
        for token in loaded.model.generate(target["memory"], prompt, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id, temperature=temperature, top_p=top_p):
            ids.append(int(token))
            decoded = tokenizer.decode(ids)
            if decoded.startswith(text) and len(decoded) > len(text):
                yield {"type": "token", "text": decoded[len(text):]}
                text = decoded
            if cancel is not None and cancel.is_set():
                break
        answer = tokenizer.decode(ids).strip()
        found: list[dict] = []
        if sources and ids:
            found = self._sources(snapshot, loaded, prompt, ids, target, top_k)
        yield {
            "type": "result", "answer": answer, "sources": found, "seconds": round(time.perf_counter() - started, 3),
            "corpus": corpus, "as_of": target["label"], "segment": target["point"], "segments": snapshot.segments,
            "complete": snapshot.complete,
        }

    def _answer_memory(self, snapshot: Corpus, loaded: LoadedModel, as_of: str | int | None) -> dict:
        """{"memory" (M, d), "point" (last segment read, fully or up to "end"), "end" (token
        position the memory has read up to), "label"}."""
        size, saved = snapshot.segment_size, snapshot.committed
        saved_tokens = min(saved * size, snapshot.tokens)
        if as_of is None:
            return {"memory": snapshot.final_state(), "point": saved - 1, "end": saved_tokens, "label": None}
        segment = None
        if isinstance(as_of, int):
            segment = as_of
        elif isinstance(as_of, str) and (as_of.startswith("segment:") or as_of.isdigit()):
            number = as_of.removeprefix("segment:")
            if not number.isdigit():
                raise CorpusError(f"bad --as-of {as_of!r} (expected segment:N)")
            index = self._document_index(snapshot)
            if not (as_of.isdigit() and any(r["path"] == as_of for r in index.records)):
                segment = int(number)
        if segment is not None:
            if not 0 <= segment < saved:
                raise CorpusError(f"segment {segment} is not saved in corpus {snapshot.name} (0..{saved - 1})")
            memory = snapshot.exact_state(segment)
            memory = memory if memory is not None else snapshot.states([segment])[0]
            return {"memory": memory, "point": segment, "end": min((segment + 1) * size, snapshot.tokens), "label": f"segment:{segment}"}
        end, label = self._document_index(snapshot).resolve_as_of(str(as_of))
        if end > saved_tokens:
            raise CorpusError(f"{label} is not read yet (corpus {snapshot.name} has {saved} of {snapshot.segments} segments saved)")
        point = (end - 1) // size
        if end == min((point + 1) * size, snapshot.tokens):
            memory = snapshot.exact_state(point)
            memory = memory if memory is not None else snapshot.states([point])[0]
        else:  # read the partial segment up to the document's last token
            previous = self._memory_at(snapshot, loaded, point - 1)
            ids = torch.tensor([snapshot.token_ids(point * size, end)], dtype=torch.long)
            memory = next(iter(loaded.model.read(ids, memory=previous[None])))[0]
        return {"memory": memory, "point": point, "end": end, "label": label}

    @staticmethod
    def _memory_at(snapshot: Corpus, loaded: LoadedModel, segment: int) -> torch.Tensor:
        if segment < 0:
            return loaded.initial_memory()
        exact = snapshot.exact_state(segment)
        return exact if exact is not None else snapshot.states([segment])[0]

    def _sources(self, snapshot: Corpus, loaded: LoadedModel, prompt: list[int], answer: list[int], target: dict, top_k: int) -> list[dict]:
        for attempt in range(2):
            try:
                return self._find_sources(snapshot, loaded, prompt, answer, target, top_k)
            except FileNotFoundError:
                if attempt:
                    raise
                # A writer replaced the files this snapshot points to: use its new manifest.
                fresh = self.store.open(snapshot.name)
                if fresh.committed <= target["point"]:
                    return []
                snapshot = fresh
        return []

    def _find_sources(self, snapshot: Corpus, loaded: LoadedModel, prompt: list[int], answer: list[int], target: dict, top_k: int) -> list[dict]:
        model, size, last = loaded.model, snapshot.segment_size, target["point"]
        memories: dict[int, torch.Tensor] = {}

        def memory(point: int) -> torch.Tensor:
            return memories[point]

        def score(points: Sequence[int]) -> list[float]:
            stored = [p for p in points if 0 <= p < last and p not in memories]
            if stored:
                memories.update(zip(stored, snapshot.states(stored)))
            for p in points:
                if p == -1:
                    memories[-1] = loaded.initial_memory()
                elif p == last:
                    memories[last] = target["memory"].detach().to("cpu", torch.float32).reshape(loaded.initial_memory().shape)
            batch = torch.stack([memory(p) for p in points])
            return model.score(batch, prompt, answer, batch_size=128).tolist()

        rises, _ = find_rises(score, -1, last, top=top_k)
        if not rises:
            return []
        index = self._document_index(snapshot)
        spans = [(segment * size, target["end"] if segment == last else min(segment * size + size, snapshot.tokens)) for segment, _ in rises]
        chunks = self._best_chunks(snapshot, loaded, index, prompt, answer, [memory(segment - 1) for segment, _ in rises], spans)
        return [self._describe(snapshot, loaded, index, chunk, segment, rise) for chunk, (segment, rise) in zip(chunks, rises)]

    @staticmethod
    def _best_chunks(snapshot: Corpus, loaded: LoadedModel, index: DocumentIndex, prompt: list[int], answer: list[int],
                     befores: list[torch.Tensor], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """For each segment [start, end): the part where the answer's likelihood rises most.
        Prefixes of the segment, cut at document boundaries (so a source names the right
        page or file) and, for the best segment, also in quarters (a ~64-token chunk for its
        lines and excerpt), are read from the memory before that segment -- every segment's
        prefixes in one batch -- and scored in one call. Reading prefixes costs about as much
        as reading 2-3 segments, whatever the corpus size; finer cuts would cost more."""
        rows_ids, rows_memory, plans = [], [], []
        for rank, (before, (start, end)) in enumerate(zip(befores, spans)):
            cuts = cut_points(start, end, index.boundaries(start, end), pieces=4 if rank == 0 else 1)
            ids = snapshot.token_ids(start, end)
            plans.append((start, cuts, len(rows_ids)))
            for cut in cuts:
                rows_ids.append(ids[: cut - start])
                rows_memory.append(before)
        width = max(len(row) for row in rows_ids)
        batch = torch.zeros(len(rows_ids), width, dtype=torch.long)
        mask = torch.zeros_like(batch)
        for row, ids in enumerate(rows_ids):
            batch[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        states = next(iter(loaded.model.read(batch, attention_mask=mask, memory=torch.stack(rows_memory))))
        scores = loaded.model.score(torch.cat([torch.stack(befores), states.float().cpu()]), prompt, answer, batch_size=128).tolist()
        before_scores, row_scores = scores[: len(befores)], scores[len(befores) :]
        chunks = []
        for (start, cuts, first_row), base in zip(plans, before_scores):
            values = [base] + row_scores[first_row : first_row + len(cuts)]
            rises = [values[i + 1] - values[i] for i in range(len(cuts))]
            best = int(np.argmax(rises))
            chunks.append(((cuts[best - 1] if best else start), cuts[best]))
        return chunks

    def _describe(self, snapshot: Corpus, loaded: LoadedModel, index: DocumentIndex, chunk: tuple[int, int], segment: int, rise: float) -> dict:
        parts = index.provenance(*chunk)
        part = max(parts, key=lambda p: p["tokens"][1] - p["tokens"][0])
        saved_tokens = min(snapshot.committed * snapshot.segment_size, snapshot.tokens)
        first, last = part["line_tokens"]
        lines_text = " ".join(loaded.tokenizer.decode(snapshot.token_ids(max(first, 0), min(last, saved_tokens))).split())
        excerpt = lines_text
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = " ".join(loaded.tokenizer.decode(snapshot.token_ids(*part["tokens"])).split())
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = excerpt[: EXCERPT_CHARS - 3].rstrip() + "..."
        return {
            "path": part["path"], "page": part["page"], "lines": list(part["lines"]), "excerpt": excerpt,
            "score": round(float(rise), 4), "segment": segment, "tokens": list(part["tokens"]),
        }


def _record_json(record: Any) -> dict:
    data = record.to_dict()
    return {key: (list(value) if isinstance(value, tuple) else value) for key, value in data.items()}
