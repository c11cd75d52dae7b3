"""The corpus service: everything the CLI, the web UI, scripts and benchmarks do with corpora.

UI-agnostic: no printing, progress through callbacks, cancellation through a
`threading.Event`, plain dicts out (JSON-ready). One `CorpusService` loads each model once
and is safe to share between threads: any number of `ask`s (also while an `ingest` runs in
another thread; they answer from the last saved segment) and at most one writer per corpus
(a second is refused with `CorpusLocked`, in this process or any other).

Public API (dict shapes in each docstring)::

    service = CorpusService(home=None, model_dir=None, max_question_tokens=256)
    service.ingest(paths, corpus, *, uploads=None, max_tokens=None, progress=None, cancel=None, ocr=False) -> report
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

Chat history (`app.corpus.chat_history`, `service.history`) is kept per corpus and goes with it.
Uploads (`app.corpus.uploads`) are files staged by a server; `ingest` moves them into
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
`app.corpus.format`). So the same command after a crash resumes, an append reads only the
new segments, and a change re-reads from the changed segment (at most K-1 segments
earlier, K = segments per shard).
"""
from __future__ import annotations

from app.corpus.errors import CorpusError, CorpusLocked
from app.service.asking import Asking
from app.service.corpora import DEFAULT_MAX_QUESTION_TOKENS
from app.service.ingesting import Cancelled, Ingesting
from app.service.models import model_fingerprint

__all__ = ["CorpusService", "CorpusError", "CorpusLocked", "Cancelled", "model_fingerprint", "DEFAULT_MAX_QUESTION_TOKENS"]


class CorpusService(Ingesting, Asking):
    """Corpora under `home` (default `$RMTQA_HOME` or ~/.rmtqa), read with `model_dir`.

    `model` injects an already loaded reader for `model_dir` (tests, benchmarks); its
    fingerprint is still that of the files in `model_dir`. The parts: `Corpora` (corpora and
    their models), `Ingesting` (reading), `Asking` (answers, sources, passages).
    """
