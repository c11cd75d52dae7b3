"""Reading documents into a corpus: scan (loaders + tokenizer), compare the hash chain, read
the changed segments, commit shards; progress through callbacks, cancellation by an event."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from app.corpus.documents import concat_line_arrays
from app.corpus.errors import CorpusError
from app.corpus.format import STATE_DTYPE, chain_hashes, shard_segments, validate_name
from app.corpus.uploads import Staged
from app.service.corpora import Corpora
from app.service.models import LoadedModel

Progress = Callable[[dict], None]
RATE_WINDOW_S = 20.0  # the reading rate (and ETA) is smoothed over about this many seconds


class Cancelled(CorpusError):
    """An ingest cancelled before its reading began (while scanning): nothing was changed."""


class Ingesting(Corpora):
    """`CorpusService.ingest` and `remove_documents`."""

    def ingest(self, paths: Iterable[str | Path], corpus: str, *, uploads: Staged | None = None, max_tokens: int | None = None,
               progress: Progress | None = None, cancel: threading.Event | None = None, ocr: bool = False) -> dict:
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
        as the stream outgrows the corpus by more, and nothing changes. `ocr` reads PDF pages
        without a text layer by OCR (`ingest.ocr`); a corpus read so once keeps it, since every
        ingest reads all its paths again.

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
                                uploads=uploads, max_tokens=max_tokens, ocr=ocr)
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
                must_exist: bool = False, uploads: Staged | None = None, max_tokens: int | None = None, ocr: bool = False) -> dict:
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
                ocr = ocr or bool(old and old.get("ocr"))
                scan = self._scan(corpus, sources, loaded, old, progress, cancel, max_tokens, uploads, ocr)
                plan = writer.begin(
                    model=loaded.info(), tokenizer=getattr(loaded.tokenizer, "fingerprint", type(loaded.tokenizer).__name__),
                    sources=sources, records=[_record_json(r) for r in scan["stream"].records], files=scan["report"]["documents"],
                    skipped=scan["report"]["skipped"], line_tokens=scan["line_tokens"], line_chars=scan["line_chars"],
                    offsets=scan["offsets"], tokens=len(scan["tokens"]), hashes=scan["hashes"], ocr=ocr,
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
            "ocr": ocr,
        }

    def _scan(self, corpus: str, sources: list[str], loaded: LoadedModel, old: dict | None, progress: Progress | None,
              cancel: threading.Event | None, max_tokens: int | None, uploads: Staged | None, ocr: bool) -> dict:
        """Run the loaders and the tokenizer over `sources`: the token stream, its hash chain
        and line arrays, and the report (a dict). Enforces `max_tokens` and `cancel` as it goes."""
        from ingest.pipeline import ingest_paths
        from ingest.records import DocumentRecord

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

        report, stream = ingest_paths(self._labelled(sources), loaded.tokenizer, progress=on_document, ocr=ocr)
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


def _record_json(record: Any) -> dict:
    data = record.to_dict()
    return {key: (list(value) if isinstance(value, tuple) else value) for key, value in data.items()}


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
