"""The corpus service: everything the CLI, the web UI, scripts and benchmarks do with corpora.

UI-agnostic: no printing, progress through callbacks, cancellation through a
`threading.Event`, plain dicts out (JSON-ready). One `CorpusService` loads each model once
and is safe to share between threads: any number of `ask`s (also while an `ingest` runs in
another thread; they answer from the last saved segment) and at most one writer per corpus
(a second is refused with `CorpusLocked`, in this process or any other).

Public API (dict shapes in each docstring)::

    service = CorpusService(home=None, model_dir=None, max_question_tokens=256)
    service.ingest(paths, corpus, *, uploads=None, max_tokens=None, progress=None, cancel=None) -> report
    service.remove_documents(corpus, paths, *, progress=None, cancel=None) -> report
    service.ask(corpus, question, *, as_of=None, ...) -> answer
    service.ask_stream(corpus, question, *, as_of=None, ...) -> iterator of events
    service.passage(corpus, path, page, lines) -> the cited lines in context (a source "opened")
    service.list_corpora() -> [summary];  service.corpus(corpus) -> summary
    service.documents(corpus) -> [document];  service.remove(corpus) -> None

Errors a user can act on raise `CorpusError` (one clear line); `CorpusLocked` and
`Cancelled` are ones. Segment numbers in results and in `as_of="segment:N"` count from 1
("the memory after segment N of M"), as everything users read does.

Requests are bounded: a question longer than `max_question_tokens` is refused before any
model work (answering costs grow with the prompt), and `ingest(max_tokens=N)` refuses, while
scanning, an ingest that would add more than N tokens (a server's per-upload cap).

Chat history (`app.chat_history`, `service.history`) is kept per corpus and goes with it.
Uploads (`app.uploads`) are files staged by a server; `ingest` moves them into
`$RMTQA_HOME/uploads/<corpus>/` under the corpus's lock and names them as uploaded, so the
token stream the model reads, reports and sources never show the server's layout.

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
from app.chat_history import ChatHistory
from app.corpus_store import writer_pid
from app.paths import default_model_dir, rmtqa_home
from app.sources import cut_points, find_rises
from app.uploads import Staged, UploadStore

__all__ = ["CorpusService", "CorpusError", "CorpusLocked", "Cancelled", "model_fingerprint"]

Progress = Callable[[dict], None]
EXCERPT_CHARS = 300
DEFAULT_MAX_QUESTION_TOKENS = 256
QUESTION_CHARS_PER_TOKEN = 32  # longer than this many chars per allowed token: refused untokenized
RATE_WINDOW_S = 20.0  # the reading rate (and ETA) is smoothed over about this many seconds
PASSAGE_CONTEXT_LINES = 8  # lines shown around a cited passage of a text or code file
PASSAGE_MAX_LINES = 200


class Cancelled(CorpusError):
    """An ingest cancelled before its reading began (while scanning): nothing was changed."""


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

    def __init__(self, home: str | Path | None = None, model_dir: str | Path | None = None, *, model: Any = None,
                 max_question_tokens: int = DEFAULT_MAX_QUESTION_TOKENS):
        self.home = Path(home).expanduser() if home is not None else rmtqa_home()
        self.store = CorpusStore(self.home)
        self.uploads = UploadStore(self.home / "uploads")
        self.history = ChatHistory(self.home / "chat.sqlite3")
        self.max_question_tokens = max_question_tokens
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
        """One summary per corpus, by name: {"name", "state", "documents" (files), "tokens",
        "segments", "model" (directory it was read with), "memory_sha256" (of the final
        float32 memory; null until complete), "bytes", "bytes_per_token",
        "model_fingerprint", "tokenizer", "complete", "writing" (an ingest is running),
        "segments_saved", "updated"}. "state" is "reading" (an ingest is running, also for a
        corpus whose first segments are not saved yet), "partial" (a reading was stopped:
        ingest again to continue), "complete" or "damaged" (with the problem in "damaged")."""
        out = [_with_state(summary) for summary in self.store.summaries()]
        listed = {summary["name"] for summary in out}
        out += [_with_state(_reading_stub(name)) for name in self._being_created() if name not in listed]
        return sorted(out, key=lambda summary: summary["name"])

    def corpus(self, corpus: str) -> dict:
        """The summary of one corpus (as in `list_corpora`) plus its "sources"."""
        snapshot = self._open(corpus)
        return {**_with_state(snapshot.summary()), "sources": list(snapshot.manifest.get("sources", []))}

    def _open(self, corpus: str) -> Corpus:
        """The corpus's snapshot; one that is being created says so instead of "no corpus"."""
        try:
            return self.store.open(corpus)
        except CorpusError:
            if corpus in self._being_created():
                raise CorpusError(f"corpus {corpus} is being read: nothing of it is saved yet; ask again in a moment") from None
            raise

    def _being_created(self) -> list[str]:
        """Corpora whose first reading is running (a live writer, no manifest yet)."""
        root = self.store.root
        if not root.is_dir():
            return []
        found = []
        for entry in root.iterdir():
            try:
                if entry.is_dir() and validate_name(entry.name) and not self.store.exists(entry.name) and writer_pid(entry) is not None:
                    found.append(entry.name)
            except CorpusError:
                continue
        return found

    def documents(self, corpus: str) -> list[dict]:
        """The files of a corpus in reading order, for an as-of selector: [{"path", "kind",
        "pages" (int or null), "tokens", "token_start", "segment_start", "segment_end",
        "saved" (bool: its memory is saved)}]; segments count from 1. Pass `path` (or
        `path#page=N`) as `as_of`."""
        snapshot = self._open(corpus)
        index = self._document_index(snapshot)
        size = snapshot.segment_size
        out = []
        for entry in index.files:
            end = entry["token_start"] + entry["tokens"]
            out.append({
                "path": entry["path"], "kind": entry["kind"], "pages": entry["pages"], "tokens": entry["tokens"],
                "token_start": entry["token_start"], "segment_start": entry["token_start"] // size + 1,
                "segment_end": (end - 1) // size + 1, "saved": end <= snapshot.committed * size or (snapshot.complete and end <= snapshot.tokens),
            })
        return out

    def remove(self, corpus: str) -> None:
        """Delete a corpus, its uploaded files and its chat history (refused with
        `CorpusLocked` while it is being written)."""
        self.store.remove(corpus)
        self.uploads.remove(corpus)
        self.history.clear(corpus)
        with self._lock:
            self._documents = {k: v for k, v in self._documents.items() if Path(k[0]).name != corpus}

    # ------------------------------------------------------------ ingest

    def ingest(self, paths: Iterable[str | Path], corpus: str, *, uploads: Staged | None = None, max_tokens: int | None = None,
               progress: Progress | None = None, cancel: threading.Event | None = None) -> dict:
        """Read `paths` (and staged `uploads`) into `corpus` (created if new; appended to its
        earlier paths if not).

        Returns the ingest report: the dry-run report's {"documents": [{"path", "kind",
        "pages", "documents", "tokens", "chars", "token_start"}], "skipped": [{"path",
        "reason", "page"?}], "tokens", "seconds", "tokenizer"} plus {"corpus", "segments",
        "segments_read", "first_segment_read", "first_changed_segment", "rebuilt" (reason or
        null), "complete", "cancelled", "bytes", "bytes_per_token", "tokens_per_s" (reading
        rate), "read_seconds", "scan_seconds", "memory_sha256", "model", "sources"}. Segment
        fields are indices (0-based) into the corpus's segments.

        `uploads` are moved into the corpus's upload folder once its lock is held and kept
        only if this ingest gets as far as recording them; they are always consumed.
        `max_tokens` caps the tokens this ingest may add to the corpus: scanning stops as soon
        as the stream outgrows the corpus by more, and nothing changes.

        `progress(event)` gets {"phase": "scan", "path", "files", "pages", "documents",
        "tokens"} per document (a PDF page, a text block), then {"phase": "read",
        "segments_done", "segments_total", "segments_read", "segments_to_read", "tokens_read",
        "tokens_to_read", "tokens_per_s", "eta_s"} per segment (rate smoothed over ~20 s).
        `cancel.set()` while scanning raises `Cancelled` (nothing changed); while reading it
        stops after the current segment, saving what was read (the next ingest resumes
        there), and the report has "cancelled": true.
        """
        new = [os.path.abspath(os.fspath(p)) for p in paths]
        try:
            if not new and not (uploads and uploads.files):
                raise CorpusError("nothing to ingest: give at least one PATH")
            return self._update(corpus, lambda old: old + [p for p in dict.fromkeys(new) if p not in old], progress, cancel,
                                uploads=uploads, max_tokens=max_tokens)
        finally:
            if uploads is not None:
                uploads.discard()  # placed files were moved out; what is left was never used

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

    def _labelled(self, sources: list[str]) -> list[str | tuple[str, str]]:
        """Sources for `ingest_paths`: an upload goes as (path, the name it was uploaded under)."""
        return [(source, name) if (name := self.uploads.name(source)) else source for source in sources]

    def _update(self, corpus: str, new_sources: Callable[[list[str]], list[str]], progress: Progress | None, cancel: threading.Event | None,
                must_exist: bool = False, uploads: Staged | None = None, max_tokens: int | None = None) -> dict:
        started = time.perf_counter()
        validate_name(corpus)
        with self.store.writer(corpus) as writer:
            old = writer.manifest
            if must_exist and old is None:
                raise CorpusError(f"no corpus named {corpus}")
            placement = self.uploads.place(corpus, uploads) if uploads is not None and uploads.files else None
            try:
                loaded = self._ingest_model(old)
                sources = new_sources(list(old.get("sources", [])) if old else [])
                if placement is not None:
                    sources += [p for p in dict.fromkeys(placement.paths) if p not in sources]
                scan = self._scan(corpus, sources, loaded, old, progress, cancel, max_tokens, uploads)
                plan = writer.begin(
                    model=loaded.info(), tokenizer=getattr(loaded.tokenizer, "fingerprint", type(loaded.tokenizer).__name__),
                    sources=sources, records=[_record_json(r) for r in scan["stream"].records], files=scan["report"]["documents"],
                    skipped=scan["report"]["skipped"], line_tokens=scan["line_tokens"], line_chars=scan["line_chars"],
                    offsets=scan["offsets"], tokens=len(scan["tokens"]), hashes=scan["hashes"],
                )
            except BaseException:
                if placement is not None:
                    placement.undo()  # the corpus does not record them: the folder is as it was
                raise
            if placement is not None:
                placement.keep()
            read = self._read(writer, loaded, scan["tokens"], scan["hashes"], plan["start"], progress, cancel)
            writer.finish(read["memory"] if not read["cancelled"] else None)
            snapshot = writer.corpus()
        size_bytes = snapshot.bytes_on_disk()
        tokens = len(scan["tokens"])
        return {
            **scan["report"],
            "corpus": corpus,
            "segments": len(scan["hashes"]),
            "segments_read": read["segments_read"],
            "first_segment_read": plan["start"],
            "first_changed_segment": plan["first_changed"],
            "rebuilt": plan["rebuilt"],
            "complete": snapshot.complete,
            "cancelled": read["cancelled"],
            "bytes": size_bytes,
            "bytes_per_token": round(size_bytes / tokens, 2),
            "tokens_per_s": round(read["tokens_read"] / read["seconds"], 1) if read["seconds"] > 0 else None,
            "read_seconds": round(read["seconds"], 3),
            "scan_seconds": scan["seconds"],
            "seconds": round(time.perf_counter() - started, 3),
            "memory_sha256": snapshot.manifest.get("memory_sha256"),
            "model": str(loaded.directory),
            "sources": sources,
        }

    def _scan(self, corpus: str, sources: list[str], loaded: LoadedModel, old: dict | None, progress: Progress | None,
              cancel: threading.Event | None, max_tokens: int | None, uploads: Staged | None) -> dict:
        """Run the loaders and the tokenizer over `sources`: the token stream, its hash chain
        and line arrays, and the report (a dict). Enforces `max_tokens` and `cancel` as it goes."""
        from ingest.pipeline import ingest_paths
        from ingest.stream import DocumentRecord

        began = time.perf_counter()
        base = int(old.get("tokens", 0)) if old else 0
        scanned = {"files": 0, "pages": 0, "documents": 0, "tokens": 0}
        last_path: list[str] = []

        def on_document(result: Any) -> None:
            if isinstance(result, DocumentRecord):
                if last_path != [result.path]:
                    scanned["files"] += 1
                    last_path[:] = [result.path]
                scanned["pages"] += result.page is not None
                scanned["documents"] += 1
                scanned["tokens"] += result.tokens
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"reading into corpus {corpus} was cancelled while scanning the files; nothing was changed")
            if max_tokens is not None and scanned["tokens"] - base > max_tokens:
                size = f"{uploads.bytes / 1e6:,.1f} MB, " if uploads is not None and uploads.files else ""
                raise CorpusError(f"this upload is too large to read here ({size}more than {max_tokens:,} tokens after "
                                  f"{scanned['files']:,} {_plural(scanned['files'], 'file')}); the limit is {max_tokens:,} tokens "
                                  "per upload: upload less at once")
            if progress is not None:
                progress({"phase": "scan", "path": result.path, **scanned})

        report, stream = ingest_paths(self._labelled(sources), loaded.tokenizer, progress=on_document)
        if not stream.records:
            first = report.skipped[0] if report.skipped else None
            why = f" ({first.path}: {first.reason})" if first else ""
            raise CorpusError(f"nothing readable to put in corpus {corpus}{why}")
        tokens = np.frombuffer(stream.tokens, dtype=np.uint32)
        line_tokens, line_chars, offsets = concat_line_arrays(stream.records)
        return {"report": report.to_dict(), "stream": stream, "tokens": tokens, "hashes": chain_hashes(tokens, loaded.segment_size),
                "line_tokens": line_tokens, "line_chars": line_chars, "offsets": offsets,
                "seconds": round(time.perf_counter() - began, 3)}

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
        rate = _SmoothedRate(began)

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
                        per_s = rate.update(tokens_read)
                        progress({
                            "phase": "read", "segments_done": segment, "segments_total": count,
                            "segments_read": segment - start, "segments_to_read": count - start,
                            "tokens_read": tokens_read, "tokens_to_read": tokens_to_read,
                            "tokens_per_s": per_s, "eta_s": (tokens_to_read - tokens_read) / per_s if per_s else None,
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
        this segment), "segments", "complete"}. Segments count from 1: "segment": 96 with
        "segments": 740 means the answer came from the memory after segment 96 of 740.
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

        `as_of`: None (the final memory), a segment number (int, "segment:N" or "N": the
        memory after segment N, counting from 1), or a document: its path as listed by
        `documents` (or a unique suffix such as the file name), optionally "#page=N" -- the
        memory after exactly its last token. `cancel.set()` stops generation early and skips
        the sources. Errors
        (an empty or too long question, an unknown corpus, ...) are raised before the first
        event, so a caller can keep the question for the user to fix.
        """
        from model.tasks import QUESTION_TEMPLATE

        started = time.perf_counter()
        question = (question or "").strip()
        if not question:
            raise CorpusError("the question is empty")
        self._check_question(question)
        snapshot = self._open(corpus)
        if snapshot.committed == 0:
            if snapshot.summary()["writing"]:
                raise CorpusError(f"corpus {corpus} is being read: no segment of it is saved yet; ask again in a moment")
            raise CorpusError(f"corpus {corpus} has no saved memory yet: run `rmtqa ingest ... --corpus {corpus}`")
        loaded = self._model_for(snapshot)
        tokenizer = loaded.tokenizer
        self._check_question(question, len(tokenizer.encode(question)))
        prompt = tokenizer.encode(QUESTION_TEMPLATE.format(question=question))
        target = self._answer_memory(snapshot, loaded, as_of)
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
        if sources and ids and not (cancel is not None and cancel.is_set()):
            found = self._sources(snapshot, loaded, prompt, ids, target, top_k)
        yield {
            "type": "result", "answer": answer, "sources": found, "seconds": round(time.perf_counter() - started, 3),
            "corpus": corpus, "as_of": target["label"], "segment": target["point"] + 1, "segments": snapshot.segments,
            "complete": snapshot.complete,
        }

    def _check_question(self, question: str, tokens: int | None = None) -> None:
        """Refuse a question over `max_question_tokens`: first by its characters (so that a
        huge question is refused before it is tokenized), then by its `tokens`."""
        cap = self.max_question_tokens
        if tokens is None and len(question) > cap * QUESTION_CHARS_PER_TOKEN:
            size = f"{len(question):,} characters"
        elif tokens is not None and tokens > cap:
            size = f"{tokens:,} tokens"
        else:
            return
        raise CorpusError(f"the question is too long ({size}); the limit is {cap:,} tokens: ask something shorter")

    def _answer_memory(self, snapshot: Corpus, loaded: LoadedModel, as_of: str | int | None) -> dict:
        """{"memory" (M, d), "point" (last segment read, fully or up to "end"), "end" (token
        position the memory has read up to), "label"}."""
        size, saved = snapshot.segment_size, snapshot.committed
        saved_tokens = min(saved * size, snapshot.tokens)
        if as_of is None:
            return {"memory": snapshot.final_state(), "point": saved - 1, "end": saved_tokens, "label": None}
        number = None
        if isinstance(as_of, int):
            number = as_of
        elif isinstance(as_of, str) and (as_of.startswith("segment:") or as_of.isdigit()):
            digits = as_of.removeprefix("segment:")
            if not digits.isdigit():
                raise CorpusError(f"bad --as-of {as_of!r} (expected segment:N)")
            index = self._document_index(snapshot)
            if not (as_of.isdigit() and any(r["path"] == as_of for r in index.records)):
                number = int(digits)
        if number is not None:
            if not 1 <= number <= saved:
                raise CorpusError(f"segment {number} is not saved in corpus {snapshot.name} (segments 1 to {saved} are)")
            segment = number - 1
            memory = snapshot.exact_state(segment)
            memory = memory if memory is not None else snapshot.states([segment])[0]
            return {"memory": memory, "point": segment, "end": min((segment + 1) * size, snapshot.tokens), "label": f"segment:{number}"}
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
        tidy = _code_lines if part["kind"] == "code" else _one_line
        excerpt = tidy(loaded.tokenizer.decode(snapshot.token_ids(max(first, 0), min(last, saved_tokens))))
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = tidy(loaded.tokenizer.decode(snapshot.token_ids(*part["tokens"])))
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = excerpt[: EXCERPT_CHARS - 3].rstrip() + "..."
        return {
            "path": part["path"], "page": part["page"], "lines": list(part["lines"]), "excerpt": excerpt,
            "score": round(float(rise), 4), "segment": segment + 1, "tokens": list(part["tokens"]),
        }

    def passage(self, corpus: str, path: str, page: int | None = None, lines: Sequence[int] | None = None) -> dict:
        """A source opened: the text around lines [first, last] of `path` (and `page`), as
        the corpus read it (from its saved tokens; the file itself is not needed). For a PDF
        page, the whole page; for other files, `PASSAGE_CONTEXT_LINES` lines either side.
        Returns {"path", "page", "kind", "lines": [{"number", "text", "cited"}], "cut"
        (true when lines beyond `PASSAGE_MAX_LINES` were left out)}."""
        snapshot = self._open(corpus)
        index = self._document_index(snapshot)
        first, last = (int(lines[0]), int(lines[1])) if lines else (1, 1)
        records = [i for i, r in enumerate(index.records) if r["path"] == path and r["page"] == page
                   and (page is not None or r["line_start"] <= last and first <= r["line_end"])]
        if not records:
            raise CorpusError(f"no {path}{f' page {page}' if page is not None else ''} lines {first}-{last} in corpus {corpus}")
        saved_tokens = min(snapshot.committed * snapshot.segment_size, snapshot.tokens)
        tokenizer = self._model_for(snapshot).tokenizer
        out, cut = [], False
        for i in records:
            record = index.records[i]
            lo, hi = int(index.offsets[i]), int(index.offsets[i + 1])
            cumulative = index.line_tokens[lo:hi]
            body = record["token_start"] + record.get("header_tokens", 0)
            shown = range(record["line_start"], record["line_end"] + 1)
            if page is None:
                shown = range(max(first - PASSAGE_CONTEXT_LINES, shown.start), min(last + PASSAGE_CONTEXT_LINES, shown.stop - 1) + 1)
            for number in shown:
                j = number - record["line_start"]
                if j + 1 >= len(cumulative) or len(out) >= PASSAGE_MAX_LINES:
                    cut = cut or len(out) >= PASSAGE_MAX_LINES
                    break
                start, end = body + int(cumulative[j]), body + int(cumulative[j + 1])
                if end > saved_tokens:
                    cut = True
                    break
                text = tokenizer.decode(snapshot.token_ids(start, end)) if end > start else ""
                out.append({"number": number, "text": text.rstrip("\n"), "cited": first <= number <= last})
        return {"path": path, "page": page, "kind": index.records[records[0]]["kind"], "lines": out, "cut": cut}


def _record_json(record: Any) -> dict:
    data = record.to_dict()
    return {key: (list(value) if isinstance(value, tuple) else value) for key, value in data.items()}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _code_lines(text: str) -> str:
    """Code as lines (indentation kept, trailing blanks dropped): line breaks carry meaning."""
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


class _SmoothedRate:
    """Tokens per second for progress and ETA: the plain average for the first
    `RATE_WINDOW_S` seconds, then an exponential moving average over about that window, so
    the estimate follows a change in load without swinging with every segment."""

    def __init__(self, began: float):
        self.began = self.last = began
        self.tokens = 0
        self.rate: float | None = None

    def update(self, tokens: int) -> float | None:
        now = time.perf_counter()
        elapsed, step = now - self.began, now - self.last
        if step > 0 and elapsed > 0:
            if self.rate is None or elapsed < RATE_WINDOW_S:
                self.rate = tokens / elapsed
            else:
                self.rate += min(step / RATE_WINDOW_S, 1.0) * ((tokens - self.tokens) / step - self.rate)
            self.last, self.tokens = now, tokens
        return self.rate


def _with_state(summary: dict) -> dict:
    """`summary` with its "state": "reading", "partial" or "complete" (a state the store
    already gave, e.g. a damaged corpus, is kept)."""
    if not summary.get("state"):
        summary = {**summary, "state": "reading" if summary["writing"] else "complete" if summary["complete"] else "partial"}
    return summary


def _reading_stub(name: str) -> dict:
    """The summary of a corpus whose first reading runs and has saved nothing yet."""
    return {"name": name, "documents": 0, "tokens": 0, "segments": 0, "model": None, "memory_sha256": None, "bytes": 0,
            "bytes_per_token": None, "model_fingerprint": None, "tokenizer": None, "complete": False, "writing": True,
            "segments_saved": 0, "updated": None, "damaged": None}
