"""Answering from a corpus's memory: the answer streamed token by token, then its sources (the
segments that raised its likelihood most, narrowed to lines) and the passages they cite."""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from app.corpus.documents import DocumentIndex
from app.corpus.errors import CorpusError
from app.corpus.snapshot import Corpus
from app.service.corpora import Corpora
from app.service.models import LoadedModel
from model.rises import cut_points, find_rises

ASK_MODES = ("fast", "reread", "deep")
NOT_FOUND = "Not found in this corpus with confidence"
REREAD_PROTOCOL = ("greedy_answers", "next_token_logits")  # what a reader needs beyond the fast protocol (model.rmt has both)
SCANS_KEPT = 2  # corpora whose deep-read scan is kept between questions
AUTO_MODE_SECONDS = 5.0  # mode=None re-reads when that is estimated to answer within this
REREAD_COST_IN_ANSWERS = 40  # a re-read took ~35 fast answers (0.68 s vs 0.02 s, 108k tokens, shipped reader, one batched decode)
EXCERPT_CHARS = 300
QUESTION_CHARS_PER_TOKEN = 32  # longer than this many chars per allowed token: refused untokenized
PASSAGE_CONTEXT_LINES = 8  # lines shown around a cited passage of a text or code file
PASSAGE_MAX_LINES = 200
# Provenance a source carries when its document has it: a Word heading path, a page read by OCR.
SOURCE_EXTRAS = ("section", "ocr")


class Asking(Corpora):
    """`CorpusService.ask`, `ask_stream` and `passage`."""

    def ask(self, corpus: str, question: str, **options: Any) -> dict:
        """Answer `question` from the corpus's memory. Options as for `ask_stream`.

        Returns {"answer", "sources": [{"path", "page" (int for paged documents, else
        null), "lines": [first, last], "excerpt" (<= 300 chars), "score" (rise of the
        answer's log-likelihood over that segment; for the place a re-read or deep answer was
        copied from, flagged "reread" or "deep", the answer's mean token probability there), "segment", "tokens": [start, end],
        "section" (a heading path, when the document has one), "ocr" (true: the page's text
        was read by OCR)}],
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
                   cancel: threading.Event | None = None, mode: str | None = None, min_confidence: float | None = None) -> Iterator[dict]:
        """Yield {"type": "token", "text"} as the answer is generated, then one
        {"type": "result", ...} with the fields of `ask` (sources are found after the answer).

        `as_of`: None (the final memory), a segment number (int, "segment:N" or "N": the
        memory after segment N, counting from 1), or a document: its path as listed by
        `documents` (or a unique suffix such as the file name), optionally "#page=N" -- the
        memory after exactly its last token. `cancel.set()` stops generation early and skips
        the sources.

        `mode`: "fast" answers from the memory alone; "reread" then re-reads the places the
        memory points at with the question (model/reread.py) and streams the answer it settles
        on; "deep" reads the whole corpus again with the question (model/deep.py; its result
        has "deep": {"key", "windows", "windows_read", "updates"} and its first source is the
        place of the running answer, "deep": true; "not found" when no place answered); None picks
        deep for a code-fact question when the model ships a deep reader, else reread when its
        cost, estimated from the fast answer's own time, is within `AUTO_MODE_SECONDS`, else fast. The result says which ("mode", and
        "mode_reason" when picked), and for reread also "fast_answer"; its first source is the
        place the answer was copied from ("reread": true).

        Confidence (model/confidence.py), when the reader has a calibration: "confidence"
        (0-1, the calibrated probability that the answer is right) and "abstained" (below
        `min_confidence`, default the service's, else the calibration's threshold): then "answer" is `NOT_FOUND`,
        "best_guess" the answer, and the sources are the closest places. Always
        "question_type" (e.g. "qa1", "needle", "code", or null) and "trained_type" (whether the reader
        was trained on that type; null when its training is not recorded). Errors
        (an empty or too long question, an unknown corpus, ...) are raised before the first
        event, so a caller can keep the question for the user to fix.
        """
        from model.code_facts import code_fact_kind
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
        if mode not in (None, *ASK_MODES):
            raise CorpusError(f"unknown mode {mode!r}: use one of {', '.join(ASK_MODES)}")
        target = self._answer_memory(snapshot, loaded, as_of)
        ids: list[int] = []
        text = ""
        began = time.perf_counter()
        extra: dict[str, Any] = {}
        if mode is None and not all(hasattr(loaded.model, name) for name in REREAD_PROTOCOL):
            mode, extra["mode_reason"] = "fast", "fast: this reader cannot re-read"
        elif mode is None and code_fact_kind(question) is not None and loaded.has_deep_reader:
            mode, extra["mode_reason"] = "deep", "deep: a question about code, which the deep reader was trained to read"
        fast_stream = mode == "fast"  # auto mode waits: the fast answer may be re-read
        for token in loaded.model.generate(target["memory"], prompt, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id, temperature=temperature, top_p=top_p):
            ids.append(int(token))
            decoded = tokenizer.decode(ids)
            if fast_stream and decoded.startswith(text) and len(decoded) > len(text):
                yield {"type": "token", "text": decoded[len(text):]}
                text = decoded
            if cancel is not None and cancel.is_set():
                break
        cancelled = cancel is not None and cancel.is_set()
        if mode is None:
            estimate = (time.perf_counter() - began) * REREAD_COST_IN_ANSWERS
            mode = "reread" if estimate <= AUTO_MODE_SECONDS and not cancelled else "fast"
            extra["mode_reason"] = (f"reread: estimated {estimate:.1f} s, within {AUTO_MODE_SECONDS:g} s" if mode == "reread"
                                    else f"fast: a reread would take about {estimate:.0f} s (over {AUTO_MODE_SECONDS:g} s)")
        found: list[dict] = []
        result = None
        if mode in ("reread", "deep") and not cancelled:
            extra["fast_answer"] = tokenizer.decode(ids).strip()
            if mode == "reread":
                result, copied = self._reread(snapshot, loaded, question, prompt, target, max_new_tokens)
                ids = result.ids
            else:
                ids, copied, extra["deep"] = self._deep(snapshot, loaded, question, prompt, target, max_new_tokens, cancel)
            found += copied
        cancelled = cancel is not None and cancel.is_set()
        answer = tokenizer.decode(ids).strip()
        wanted = self.min_confidence if min_confidence is None else min_confidence
        if cancelled:
            judged: dict[str, Any] = {}
        elif mode == "deep":  # no calibration for deep reads yet: "not found" only when no place answered
            judged = {**self._question_kind(loaded, question), "confidence": None, "abstained": not ids}
            if judged["question_type"] == "code" and loaded.has_deep_reader:
                judged["trained_type"] = True  # read by the deep reader, which was trained on code questions
        else:
            judged = self._judge(loaded, question, prompt, target, ids, result, wanted)
        if judged.get("abstained"):
            judged["best_guess"], answer = answer, NOT_FOUND
        if not fast_stream and answer:  # not streamed token by token: the answer as judged, in one piece
            yield {"type": "token", "text": answer}
        if sources and ids and not cancelled:
            seen = {(f["path"], f["page"], tuple(f["lines"])) for f in found}
            found += [f for f in self._sources(snapshot, loaded, prompt, ids, target, top_k) if (f["path"], f["page"], tuple(f["lines"])) not in seen]
        yield {
            "type": "result", "answer": answer, "sources": found[: max(top_k, 1)], "seconds": round(time.perf_counter() - started, 3),
            "corpus": corpus, "as_of": target["label"], "segment": target["point"] + 1, "segments": snapshot.segments,
            "complete": snapshot.complete, "mode": mode, **extra, **judged,
        }

    @staticmethod
    def _question_kind(loaded: LoadedModel, question: str) -> dict:
        from model.question_types import question_type

        kind = question_type(question)
        return {"question_type": kind, "trained_type": None if loaded.trained_types is None else kind in loaded.trained_types}

    @staticmethod
    def _judge(loaded: LoadedModel, question: str, prompt: list[int], target: dict, ids: list[int], result: Any, min_confidence: float | None) -> dict:
        """{"question_type", "trained_type", "confidence", "abstained"} of an answer (see `ask_stream`)."""
        from model.confidence import fast_features, reread_features

        out: dict[str, Any] = {**Asking._question_kind(loaded, question), "confidence": None, "abstained": False}
        trained = out["trained_type"]
        calibration = loaded.calibration
        if calibration is None:
            return out
        if result is not None:
            features = reread_features(bool(trained), result)
        else:
            memory = target["memory"].detach().to("cpu", torch.float32).reshape(loaded.initial_memory().shape)
            eos = [loaded.tokenizer.eos_id] if loaded.tokenizer.eos_id is not None else []
            logprob = float(loaded.model.score(memory[None], prompt, ids + eos)[0]) / max(len(ids) + len(eos), 1)
            features = fast_features(bool(trained), logprob)
        confidence = calibration.confidence("reread" if result is not None else "fast", features)
        threshold = calibration.threshold if min_confidence is None else min_confidence
        return {**out, "confidence": round(confidence, 4), "abstained": confidence < threshold}

    def _deep(self, snapshot: Corpus, loaded: LoadedModel, question: str, prompt: list[int], target: dict, max_new_tokens: int,
              cancel: threading.Event | None) -> tuple[list[int], list[dict], dict]:
        """The deep answer (model/deep.py): everything saved up to `target` read again with the
        question. Returns its ids, the place it was copied from as a source, and what was read."""
        from model.deep import deep_read, reader_for

        tokens, index, headings = self._deep_scan(snapshot, loaded, target["end"])
        reader = reader_for(question, loaded.model, loaded.deep_reader)
        result = deep_read(reader, loaded.tokenizer.decode, question, prompt, tokens, initial_memory=loaded.initial_memory(),
                           eos_id=loaded.tokenizer.eos_id, max_new_tokens=max_new_tokens, heading=headings, index=index,
                           cancelled=lambda: cancel is not None and cancel.is_set())
        read = {"key": result.key, "windows": result.windows, "windows_read": result.windows_read, "updates": len(result.updates)}
        if result.start is None:
            return [], [], read
        segment = result.start // snapshot.segment_size
        source = self._describe(snapshot, loaded, self._document_index(snapshot), (result.start, result.end), segment, math.exp(result.local))
        return result.ids, [{**source, "deep": True}], read

    def _deep_scan(self, snapshot: Corpus, loaded: LoadedModel, end: int) -> tuple[list[int], Any, Any]:
        """(token ids, windows, headings) of the corpus up to `end`, kept for the last
        SCANS_KEPT corpora: the next question over the same corpus skips the word scan."""
        from ingest.headings import WindowHeadings
        from model.deep import DeepSettings, WindowIndex

        key = (str(snapshot.directory), snapshot.manifest["documents_sha256"], end, loaded.fingerprint)
        with self._lock:
            scan = self._scans.get(key)
        if scan is None:
            tokens = snapshot.token_ids(0, end)
            decode = loaded.tokenizer.decode
            scan = (tokens, WindowIndex(decode, tokens, DeepSettings.window),
                    WindowHeadings(tokens, self._document_index(snapshot).spans(), decode, loaded.tokenizer.encode("\n")))
            with self._lock:
                while len(self._scans) >= SCANS_KEPT:
                    self._scans.pop(next(iter(self._scans)))
                self._scans[key] = scan
        return scan

    def _reread(self, snapshot: Corpus, loaded: LoadedModel, question: str, prompt: list[int], target: dict, max_new_tokens: int) -> tuple[Any, list[dict]]:
        """The re-read answer (model/reread.py) from the memories saved up to `target`, and the
        place it was copied from as a source (empty when the memory's answer stood unconfirmed)."""
        from model.reread import reread

        last, end = target["point"], target["end"]
        final = target["memory"].detach().to("cpu", torch.float32).reshape(loaded.initial_memory().shape)

        def memory_at(points: Sequence[int]) -> torch.Tensor:
            stored = [p for p in points if 0 <= p < last]
            found = dict(zip(stored, snapshot.states(stored))) if stored else {}
            return torch.stack([loaded.initial_memory() if p < 0 else final if p >= last else found[p] for p in points])

        result = reread(loaded.model, loaded.tokenizer.decode, question, prompt, memory_at, last,
                        lambda a, b: snapshot.token_ids(a, min(b, end)), end, eos_id=loaded.tokenizer.eos_id, max_new_tokens=max_new_tokens)
        chosen = result.chosen
        if chosen is None:
            return result, []
        # Its score: the answer's mean per-token probability beside the window (it was copied, not raised).
        source = self._describe(snapshot, loaded, self._document_index(snapshot), (chosen.start, chosen.end), chosen.segment, math.exp(chosen.local))
        return result, [{**source, "reread": True}]

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
            **{key: part[key] for key in SOURCE_EXTRAS if part.get(key)},
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



def _one_line(text: str) -> str:
    return " ".join(text.split())


def _code_lines(text: str) -> str:
    """Code as lines (indentation kept, trailing blanks dropped): line breaks carry meaning."""
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))
