"""The web UI's state and event handlers (laid out by `app.webui.layout`).

A thin layer over `app.service.corpus_service.CorpusService`, the one service the CLI uses too: every
action is a service call (ingest with progress and cancel, ask_stream, passage,
list_corpora, documents, remove); the UI only lays out components and formats the
service's dicts (`app.webui.formatting`), runs reading as server-wide jobs (`app.webui.jobs`),
keeps the chat history (`app.corpus.chat_history`) and describes the model (`app.webui.model_tab`).

Entries of the API's results (endpoints: `app.webui.layout`) name their file under "file" where the service (and the CLI's
`--json`) says "path": gradio_client takes any {"path": str} dict in a result for a file to
download, and would fail on them. No result carries a server path (`PublicView`).

Safety: every string a user controls is escaped where it is shown; errors come back as
`gr.Error` (gradio_client raises `AppError` with the message). The UI's own handlers are not
API endpoints, but any HTTP client that reaches the server can call them, so none trusts
the page: deleting a corpus needs the confirmation step's server-side state, uploads are
capped in bytes and in tokens. Nothing here reaches the internet: analytics are off and all
assets are local.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import gradio as gr

from app.corpus.errors import CorpusError
from app.corpus.format import validate_name
from app.paths import default_model_dir
from app.service.corpus_service import CorpusService
from app.webui.formatting import (
    PublicView,
    answer_markdown,
    corpus_row,
    exchange_messages,
    html_text,
    jobs_rows,
    md_text,
    plural,
    progress_html,
    report_markdown,
    report_message,
)
from app.webui.jobs import DEFAULT_SLOTS, ReadingJob, ReadingJobs, UploadError
from app.webui.model_tab import heatmaps, model_card, plain_summary

DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_UPLOAD_TOKENS = 20_000_000  # about an hour of reading for the shipped reader on 2 CPU cores
MB = 1 << 20  # as Gradio counts its upload limit
POLL_SECONDS = 0.5
CONFIRM_SECONDS = 120  # a delete confirmation is good for this long
LATEST = ""  # the "as of" value for the final memory

PLACEHOLDER = "Pick a corpus and ask a question."
NO_CORPUS = ("**No corpus yet.** Open the **Upload** tab to read your documents (PDF, text, HTML, EPUB, code or a zip); "
             "then ask about them here.")


def _user_error(error: Exception, public: PublicView) -> gr.Error:
    """A service error as a toast: no server path in it, user text shown as text."""
    return gr.Error(html_text(public.text(str(error))), print_exception=False)


class WebUI:
    """The app's state (service, reading jobs, chat history) and its event handlers."""

    def __init__(self, service: CorpusService, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                 max_upload_tokens: int | None = DEFAULT_MAX_UPLOAD_TOKENS, local_paths: bool = True,
                 reading_slots: int = DEFAULT_SLOTS):
        self.service = service
        self.max_upload_mb = max_upload_mb
        self.local_paths = local_paths
        self.uploads = service.uploads
        self.uploads.collect_incoming()
        self.public = PublicView(service.uploads, service.home)
        self.jobs = ReadingJobs(service, slots=reading_slots, max_tokens=max_upload_tokens, clean=self.public.text)
        self.history = service.history
        self._stops: dict[str, threading.Event] = {}

    # ------------------------------------------------------------ models

    @property
    def model_dir(self) -> Path:
        """The model new corpora are read with (`--model`, else the shipped one)."""
        return self.service.model_dir or default_model_dir()

    def corpus_model_dir(self, summary: dict) -> str | None:
        """The model a corpus is answered with (see `CorpusService._model_for`)."""
        return str(self.service.model_dir) if self.service.model_dir is not None else summary["model"]

    def model_view(self) -> tuple[str, list]:
        """The Model tab: card and evaluation tables (markdown), heatmaps as (image, caption).
        Images go in as pixels, so Gradio serves a copy wherever the model directory is."""
        from PIL import Image

        images = []
        for path in heatmaps(self.model_dir):
            try:
                with Image.open(path) as image:
                    images.append((image.convert("RGB"), str(Path(path).relative_to(self.model_dir))))
            except (OSError, ValueError):
                continue
        return model_card(self.model_dir), images

    def model_tab(self) -> tuple:
        text, images = self.model_view()
        return text, gr.update(value=images, visible=bool(images))

    def name(self, path: str) -> str:
        return self.public.name(path)

    # ------------------------------------------------------------ corpora

    def corpora(self) -> list[dict]:
        return self.service.list_corpora()

    def names(self) -> list[str]:
        return [c["name"] for c in self.corpora()]

    def corpora_rows(self, corpora: Sequence[dict] | None = None) -> list[list]:
        rows = []
        for summary in corpora if corpora is not None else self.corpora():
            job = self.jobs.running(summary["name"])
            rows.append(corpus_row(summary, self.public.model, (job.progress or {}) if job else None))
        return rows

    def models_markdown(self, corpora: Sequence[dict]) -> str:
        if not corpora:
            return "_No corpora yet._"
        lines = ["| corpus | read with | model fingerprint |", "|---|---|---|"]
        for c in corpora:
            lines.append(f"| `{c['name']}` | {md_text(self.public.model(c['model']) or '')} | `{(c['model_fingerprint'] or '')[:19]}` |")
        return f"New corpora are read with `{self.public.model(self.model_dir)}`.\n\n" + "\n".join(lines)

    def refresh(self, chat_value: str | None = None, select: str | None = None) -> tuple:
        """Updates for everything that lists corpora: chat picker, upload target, corpora
        picker, corpora table, models table, the "no corpora yet" note, the chat's placeholder.
        The chat picker shows `select` if that corpus exists, else keeps `chat_value`, else
        the first corpus."""
        corpora = self.corpora()
        names = [c["name"] for c in corpora]
        if select in names:
            chat = gr.update(choices=names, value=select)
        elif chat_value in names:
            chat = gr.update(choices=names)
        else:  # nothing picked yet, or the picked corpus is gone
            chat = gr.update(choices=names, value=names[0] if names else None)
        return (chat, gr.update(choices=names), gr.update(choices=names), self.corpora_rows(corpora), self.models_markdown(corpora),
                gr.update(visible=not corpora), gr.update(placeholder=PLACEHOLDER if corpora else NO_CORPUS))

    def load(self, chat_value: str | None, remembered: str | None) -> tuple:
        """A page (re)load: `refresh`, the chat on the corpus this browser had picked last
        (`remembered`, kept in its localStorage) while that corpus exists. The picker's own
        value is the one the page was built with, which knows nothing of this browser."""
        return self.refresh(chat_value, select=remembered if isinstance(remembered, str) else None)

    # ------------------------------------------------------------ reading

    def _begin(self, files: Sequence[str] | None, local_path: str | None, corpus: str | None) -> ReadingJob:
        """Validate a read request and queue it as a job; uploads are copied out of Gradio's
        cache (which then forgets them) into the job's staging folder."""
        corpus = (corpus or "").strip()
        if not corpus:
            raise UploadError("name the corpus: pick one to add to, or type a new name")
        validate_name(corpus)
        if self.jobs.running(corpus):
            raise UploadError(f"corpus {corpus} is being read already; wait until it has finished or cancel it")
        files = [f for f in (files or []) if f]
        missing = [Path(f).name for f in files if not os.path.isfile(f)]
        if missing:
            raise UploadError(f"the upload of {missing[0]} is no longer on the server; upload it again")
        total = sum(os.path.getsize(f) for f in files)
        if total > self.max_upload_mb * MB:
            raise UploadError(f"the upload is {total / MB:,.1f} MB; the limit is {self.max_upload_mb:,g} MB per upload "
                              "(the server's --max-upload-mb); upload fewer files at once, or a zip")
        local: list[str] = []
        if local_path and local_path.strip():
            if not self.local_paths:
                raise UploadError("reading folders on the server is turned off for this server (it is reachable from other "
                                  "machines); upload the files instead, or start it with --local-paths")
            path = Path(local_path.strip()).expanduser()
            if not path.exists():
                raise UploadError(f"no file or folder {path} on the server")
            local = [str(path.absolute())]
        if not files and not local:
            if self.service.store.exists(corpus):  # re-scan its sources: continues a cancelled read
                local = list(self.service.corpus(corpus).get("sources", []))
            else:
                raise UploadError("choose files to upload (several, or a .zip), or type a folder path")
        staged = self.uploads.stage(files) if files else None
        self._forget_cached(files)
        try:
            return self.jobs.start(corpus, local, staged, files=[name for _, name in (staged.files if staged else [])] + local)
        except BaseException:
            if staged is not None:
                staged.discard()
            raise

    @staticmethod
    def _forget_cached(files: Sequence[str]) -> None:
        """Delete Gradio's cached copies of uploads (they are staged by now): nothing of an
        upload stays on the server outside `$RMTQA_HOME/uploads`, nor is served later."""
        from gradio.utils import get_upload_folder

        cache = Path(get_upload_folder()).resolve()
        for file in files:
            path = Path(file).resolve()
            if path.is_relative_to(cache) and path != cache:
                path.unlink(missing_ok=True)
                try:
                    path.parent.rmdir()  # Gradio's per-upload folder, when nothing else is in it
                except OSError:
                    pass

    def read(self, files, local_path, corpus, chat_value) -> Iterator[tuple]:
        """Upload tab: start reading, stream progress, end with the report."""
        # outputs: progress, report, report_json, files, read_btn, cancel_btn, state, *listing (7)
        skip = gr.skip()
        try:
            job = self._begin(files, local_path, corpus)
        except CorpusError as error:
            raise _user_error(error, self.public) from None
        corpus = job.corpus
        listing = self.refresh(chat_value)
        yield (progress_html(corpus, None, queued=self.jobs.ahead(job)), "", None, None, gr.update(interactive=False),
               gr.update(visible=True, interactive=True, value="Cancel reading"), corpus, *listing)
        while not job.done.wait(POLL_SECONDS):
            yield (progress_html(corpus, job.progress, self.name, job.cancel.is_set(), queued=self.jobs.ahead(job)),) + (skip,) * 13
        done = (gr.update(interactive=True), gr.update(visible=False), "")
        if job.error is not None:
            yield ("", f"### Could not read into `{corpus}`\n\n{md_text(job.error)}", None, skip, *done, *self.refresh(chat_value))
        elif job.report is None:
            yield ("", f"### Reading into `{corpus}` was cancelled before it began: nothing was changed", None, skip, *done,
                   *self.refresh(chat_value))
        else:
            yield ("", report_markdown(job.report, self.name), self.public.json(job.report), None, *done,
                   *self.refresh(chat_value, select=corpus))

    def cancel(self, corpus: str) -> Any:
        if corpus and self.jobs.cancel(corpus):
            return gr.update(value="Cancelling\u2026", interactive=False)
        return gr.update(visible=False)

    def jobs_view(self) -> list[dict]:
        return [self.public.json(job.view(self.name)) for job in self.jobs.jobs()]

    def jobs_panel(self, picked: str | None) -> tuple:
        """Upload tab: every reading of this server, and the ones that can be cancelled."""
        views = self.jobs_view()
        live = [job["corpus"] for job in views if job["state"] in ("queued", "starting", "scanning", "reading")]
        return jobs_rows(views), gr.update(choices=live, value=picked if picked in live else None)

    def cancel_job(self, corpus: str | None) -> str:
        if not corpus:
            return "Pick a reading to cancel."
        if self.jobs.cancel(corpus):
            return f"Cancelling the reading of `{corpus}`: what was read is kept; Read it again to continue."
        return f"`{corpus}` is not being read."

    def api_ingest(self, files: list[str] | None, corpus: str) -> dict:
        """/ingest: read uploaded files into a corpus (created if new); the ingest report."""
        try:
            job = self._begin(files, None, corpus)
        except CorpusError as error:
            raise _user_error(error, self.public) from None
        job.done.wait()
        if job.error is not None:
            raise gr.Error(html_text(job.error), print_exception=False)
        if job.report is None:
            raise gr.Error(f"reading into corpus {job.corpus} was cancelled before it began; nothing was changed", print_exception=False)
        report = dict(job.report)
        report["message"] = report_message(report, self.name)
        return self.public.json(report, api=True)

    def api_jobs(self) -> list[dict]:
        """/jobs: every reading of this server (queued, running, recently finished)."""
        return self.public.json(self.jobs_view(), api=True)

    def api_cancel(self, corpus: str) -> dict:
        """/cancel: cancel the reading of a corpus, whoever started it; the job."""
        corpus = (corpus or "").strip()
        if not self.jobs.cancel(corpus):
            raise gr.Error(html_text(f"no reading of corpus {corpus} is queued or running"), print_exception=False)
        return next(view for view in self.api_jobs() if view["corpus"] == corpus)

    # ------------------------------------------------------------ corpora tab

    def pick(self, corpus: str | None) -> tuple:
        """Corpora tab: the documents of the picked corpus; hide any pending confirmation."""
        hidden = gr.update(visible=False)
        if not corpus:
            return "", hidden, None
        try:
            documents = self.service.documents(corpus)
            summary = self.service.corpus(corpus)
        except CorpusError as error:
            return md_text(self.public.text(str(error))), hidden, None
        lines = [f"`{corpus}`: read with {md_text(self.public.model(summary['model']) or '')}; "
                 f"{plural(len(documents), 'file')} in reading order"
                 + ("" if summary["complete"] else f" (incomplete: {summary['segments_saved']:,}/{summary['segments']:,} segments saved)"),
                 "| # | file | kind | pages | tokens | read |", "|---|---|---|---|---|---|"]
        for i, d in enumerate(documents[:500], 1):
            lines.append(f"| {i} | {md_text(self.name(d['path']))} | {d['kind']} | {d['pages'] or ''} | {d['tokens']:,} | "
                         f"{'yes' if d['saved'] else 'not yet'} |")
        if len(documents) > 500:
            lines.append(f"\n\u2026 and {len(documents) - 500:,} more (`rmtqa corpora {corpus}` lists them all)")
        return "\n".join(lines), hidden, None

    def ask_delete(self, corpus: str | None) -> tuple:
        """Corpora tab, first step of a deletion: the question, and (server-side, in this
        session's state) which corpus may be deleted for the next `CONFIRM_SECONDS`."""
        if not corpus:
            return gr.update(visible=False), "", "Pick a corpus to delete.", None
        return (gr.update(visible=True), f"**Delete corpus `{corpus}`**, its uploaded files and its chat history? "
                "This cannot be undone.", "", {"corpus": corpus, "until": time.time() + CONFIRM_SECONDS})

    def delete(self, corpus: str | None, pending: dict | None, chat_value: str | None) -> tuple:
        """Second step: deletes only what the first step asked about, in this session."""
        # outputs: confirm box, message, docs, pending, *listing (7)
        try:
            if not corpus:
                raise CorpusError("pick a corpus to delete")
            if not pending or pending.get("corpus") != corpus or time.time() > pending.get("until", 0):
                raise CorpusError("nothing was confirmed for this corpus: press Delete\u2026 and confirm")
            if self.jobs.running(corpus):
                raise CorpusError(f"corpus {corpus} is being read: cancel reading first (Upload tab)")
            self.service.remove(corpus)
            message = f"Deleted corpus `{corpus}`."
        except CorpusError as error:
            message = f"Could not delete: {md_text(self.public.text(str(error)))}"
        chat, target, _, table, models, empty, placeholder = self.refresh(chat_value)
        return (gr.update(visible=False), message, "", None, chat, target, gr.update(choices=self.names(), value=None), table,
                models, empty, placeholder)

    # ------------------------------------------------------------ chat

    def chat_corpus(self, corpus: str | None, request: gr.Request | None = None) -> tuple:
        """Chat tab, a corpus picked: its as-of choices, the words about its model, and its
        own chat history (another corpus's answers never stay on screen)."""
        latest = ("latest (everything read)", LATEST)
        no_page = gr.update(visible=False, value=None)
        if not corpus:
            return gr.update(choices=[latest], value=LATEST), no_page, plain_summary(self.model_dir), []
        history = self.chat_history(corpus, request)
        try:
            summary = self.service.corpus(corpus)
            documents = self.service.documents(corpus)
        except CorpusError as error:
            return gr.update(choices=[latest], value=LATEST), no_page, md_text(self.public.text(str(error))), history
        choices = [latest] + [(f"after {self.name(d['path'])}", d["path"]) for d in documents if d["saved"]]
        about = plain_summary(self.corpus_model_dir(summary))
        if not summary["complete"]:
            about += (f"\n\n_Corpus `{corpus}` is not completely read ({summary['segments_saved']:,} of "
                      f"{summary['segments']:,} segments saved): answers come from what is read so far._")
        return gr.update(choices=choices, value=LATEST), no_page, about, history

    def as_of_pages(self, corpus: str | None, as_of: str | None) -> Any:
        """The page field, shown for a document with pages (PDF): as of the end of page N."""
        if corpus and as_of:
            try:
                pages = next((d["pages"] for d in self.service.documents(corpus) if d["path"] == as_of), None)
            except CorpusError:
                pages = None
            if pages:
                return gr.update(visible=True, value=None, maximum=pages, info=f"1\u2013{pages:,}; empty: after its last page")
        return gr.update(visible=False, value=None)

    @staticmethod
    def _user(request: gr.Request | None) -> str:
        return (getattr(request, "username", None) or "") if request is not None else ""

    def chat_history(self, corpus: str, request: gr.Request | None) -> list[dict]:
        messages: list[dict] = []
        for number, exchange in enumerate(self.history.load(corpus, self._user(request))):
            messages += exchange_messages(exchange["question"], exchange["result"], f"h{number}")
        return messages

    def clear_history(self, corpus: str | None, request: gr.Request | None = None) -> list:
        if corpus:
            self.history.clear(corpus, self._user(request))
        return []

    def stop(self, request: gr.Request | None = None) -> None:
        """Stop this session's streaming answer (Stop button)."""
        event = self._stops.get(getattr(request, "session_hash", None) or "")
        if event is not None:
            event.set()

    def ask(self, question: str, history: list, corpus: str | None, as_of: str | None, page: float | None,
            request: gr.Request | None = None, mode: str | None = None) -> Iterator[tuple]:
        """Chat tab: stream the answer (Stop ends it), then its sources; record the exchange.
        An error before the answer starts leaves the question in its box."""
        # outputs: chatbot, question, ask_btn, stop_btn
        question = (question or "").strip()
        if not corpus:
            raise gr.Error("pick a corpus first (or read one in the Upload tab)", print_exception=False)
        if not question:
            raise gr.Error("type a question", print_exception=False)
        wanted = f"{as_of}#page={int(page)}" if as_of and page else (as_of or None)
        session = getattr(request, "session_hash", None) or ""
        stop = self._stops[session] = threading.Event()
        events = self.service.ask_stream(corpus, question, as_of=wanted, cancel=stop, mode=mode or None)
        try:
            first = next(events)
        except CorpusError as error:
            self._stops.pop(session, None)
            raise _user_error(error, self.public) from None
        key = f"{int(time.time() * 1000)}"
        shown = list(history or []) + exchange_messages(question, {"answer": "\u2026", "sources": []}, key)[:2]
        pending = {"role": "assistant", "content": "Scoring where in the corpus the answer came from\u2026",
                   "metadata": {"title": "Sources", "status": "pending"}}
        yield shown, "", gr.update(visible=False), gr.update(visible=True)
        text, result = "", None
        try:
            for event in _chain(first, events):
                if event["type"] == "token":
                    text = (text + event["text"]).lstrip()
                    shown[-1] = {"role": "assistant", "content": answer_markdown({"answer": text})}
                    yield shown + [pending], gr.skip(), gr.skip(), gr.skip()
                else:
                    result = event
        except CorpusError as error:  # the corpus went away while answering
            shown[-1] = {"role": "assistant", "content": f"Could not answer: {md_text(self.public.text(str(error)))}"}
            yield shown, question, gr.update(visible=True), gr.update(visible=False)
            return
        finally:
            events.close()
            self._stops.pop(session, None)
        record = self._record(corpus, result, text, stop.is_set())
        self.history.add(corpus, question, record, self._user(request))
        yield (list(history or []) + exchange_messages(question, record, key), gr.skip(), gr.update(visible=True),
               gr.update(visible=False))

    def _record(self, corpus: str, result: dict | None, text: str, stopped: bool) -> dict:
        """What the history keeps of an answer: the public result, each source with its
        passage (the cited page or lines, read from the corpus now)."""
        if result is None or stopped:
            return {"answer": text, "stopped": True, "sources": []}
        record = {key: value for key, value in result.items() if key != "type"}
        sources = []
        for source in record["sources"]:
            try:
                passage = self.service.passage(corpus, source["path"], source["page"], source["lines"])
            except CorpusError:
                passage = None
            sources.append({**source, "passage": passage})
        record["sources"] = sources
        record["as_of"] = self.name(record["as_of"]) if record.get("as_of") else None
        return self.public.json(record)

    def api_ask(self, corpus: str, question: str, as_of: str | None = None, mode: str | None = None) -> dict:
        """/ask: {"answer", "sources": [{"file", "page", "lines", "excerpt", "score", ...}], "mode", ...}."""
        try:
            return self.public.json(self.service.ask((corpus or "").strip(), question or "", as_of=as_of or None, mode=(mode or "").strip() or None), api=True)
        except CorpusError as error:
            raise _user_error(error, self.public) from None

    def api_corpora(self) -> list[dict]:
        return self.public.json(self.corpora(), api=True)


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest
