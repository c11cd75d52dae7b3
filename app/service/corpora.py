"""What every part of the corpus service builds on: where corpora live, which model reads and
answers each, and listing, describing and deleting them."""
from __future__ import annotations

import shlex
import threading
from pathlib import Path
from typing import Any

from app.corpus.chat_history import ChatHistory
from app.corpus.documents import DocumentIndex
from app.corpus.errors import CorpusError
from app.corpus.format import validate_name
from app.corpus.lock import writer_pid
from app.corpus.snapshot import Corpus
from app.corpus.store import CorpusStore
from app.corpus.uploads import UploadStore
from app.paths import default_model_dir, rmtqa_home
from app.service.models import LoadedModel, model_fingerprint

DEFAULT_MAX_QUESTION_TOKENS = 256


class Corpora:
    """The base of `CorpusService` (whose arguments it takes): the corpus store, the models
    and the document indexes that its reading (`Ingesting`) and answering (`Asking`) share."""

    def __init__(self, home: str | Path | None = None, model_dir: str | Path | None = None, *, model: Any = None,
                 max_question_tokens: int = DEFAULT_MAX_QUESTION_TOKENS, min_confidence: float | None = None):
        self.home = Path(home).expanduser() if home is not None else rmtqa_home()
        self.store = CorpusStore(self.home)
        self.uploads = UploadStore(self.home / "uploads")
        self.history = ChatHistory(self.home / "chat.sqlite3")
        self.max_question_tokens = max_question_tokens
        self.min_confidence = min_confidence  # answers below it abstain (None: each reader's calibrated threshold)
        self.model_dir = Path(model_dir).expanduser().absolute() if model_dir is not None else None
        self._injected = model
        self._models: dict[str, LoadedModel] = {}
        self._documents: dict[tuple[str, str], DocumentIndex] = {}
        self._scans: dict[tuple, tuple] = {}  # the last corpora scanned by deep reads (asking.py: _deep_scan)
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
                    from model.backbones import load_rmt

                    model = load_rmt(directory)
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
