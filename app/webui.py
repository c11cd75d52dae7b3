"""The rmtqa web UI (Gradio 6), started by `rmtqa serve`.

A thin layer over `app.service.CorpusService`, the one service the CLI uses too: every
action is a service call (ingest with progress and cancel, ask_stream, list_corpora,
documents, remove); this module only lays out components and formats the service's dicts
(`app.webui_format`), runs reading in background threads (`app.webui_jobs`) and describes
the model (`app.webui_model`).

Tabs: Chat (streamed answers, sources as a collapsible block, "as of document"), Upload
(files, zips or a server-side folder; live progress; cancel; the report with every skipped
file), Corpora (list, documents, delete with confirmation), Model (card, evaluation,
heatmaps, which model each corpus was read with).

Named API endpoints for `gradio_client`:

    /ingest(files: list of files, corpus: str) -> the ingest report (+ "message", one line)
    /ask(corpus: str, question: str, as_of: str = "") -> {"answer", "sources", ...}
    /corpora() -> [corpus summary]

Entries of those results name their file under "file" where the service (and the CLI's
`--json`) says "path": gradio_client takes any {"path": str} dict in a result for a file to
download, and would fail on them.

Errors a user can act on come back as `gr.Error` (gradio_client raises `AppError` with the
message). Nothing here reaches the internet: analytics are off and all assets are local.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402
from typing import Any, Iterator, Sequence  # noqa: E402

import gradio as gr  # noqa: E402

from app.corpus_store import CorpusError, validate_name  # noqa: E402
from app.paths import default_model_dir  # noqa: E402
from app.service import CorpusService  # noqa: E402
from app.webui_format import (  # noqa: E402
    CORPORA_HEADERS,
    corpus_row,
    progress_html,
    report_markdown,
    report_message,
    source_line,
    sources_markdown,
)
from app.webui_jobs import ReadingJobs, UploadError, Uploads  # noqa: E402
from app.webui_model import display_dir, has_weights, heatmaps, model_card, plain_summary  # noqa: E402

DEFAULT_MAX_UPLOAD_MB = 200
MB = 1 << 20  # as Gradio counts its upload limit
ASK_CONCURRENCY = 4
POLL_SECONDS = 0.5
LATEST = ""  # the "as of" value for the final memory

INTRO = """# rmtqa
Ask questions about whole collections of documents. The reader goes through **everything**, segment by
segment, keeping a small memory; answers come from that memory, with the places they came from."""


def api_json(value: Any) -> Any:
    """`value` with every "path" key renamed "file" (see the module doc)."""
    if isinstance(value, dict):
        return {("file" if key == "path" else key): api_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [api_json(item) for item in value]
    return value


class WebUI:
    """The app's state (service, reading jobs, uploads) and its event handlers."""

    def __init__(self, service: CorpusService, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, local_paths: bool = True):
        self.service = service
        self.max_upload_mb = max_upload_mb
        self.local_paths = local_paths
        self.uploads = Uploads(service.home / "uploads")
        self.jobs = ReadingJobs(service, self.uploads)

    # ------------------------------------------------------------ models

    @property
    def model_dir(self) -> Path:
        """The model new corpora are read with (`--model`, else the shipped one)."""
        return self.service.model_dir or default_model_dir()

    def corpus_model_dir(self, summary: dict) -> str:
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
        return self.uploads.display(path)

    # ------------------------------------------------------------ corpora

    def corpora(self) -> list[dict]:
        return self.service.list_corpora()

    def names(self) -> list[str]:
        return [c["name"] for c in self.corpora()]

    def corpora_rows(self, corpora: Sequence[dict] | None = None) -> list[list]:
        rows = []
        for summary in corpora if corpora is not None else self.corpora():
            job = self.jobs.running(summary["name"])
            rows.append(corpus_row(summary, display_dir, (job.progress or {}) if job else None))
        return rows

    def models_markdown(self, corpora: Sequence[dict]) -> str:
        if not corpora:
            return "_No corpora yet._"
        loaded = display_dir(self.model_dir)
        lines = ["| corpus | read with | model fingerprint |", "|---|---|---|"]
        for c in corpora:
            lines.append(f"| {c['name']} | `{display_dir(c['model'])}` | `{c['model_fingerprint'][:19]}` |")
        return f"New corpora are read with `{loaded}`.\n\n" + "\n".join(lines)

    def refresh(self, chat_value: str | None = None, select: str | None = None) -> tuple:
        """Updates for everything that lists corpora: chat picker, upload target, corpora
        picker, corpora table, models table."""
        corpora = self.corpora()
        names = [c["name"] for c in corpora]
        if select:
            chat = gr.update(choices=names, value=select)
        elif chat_value in names:
            chat = gr.update(choices=names)
        else:  # nothing picked yet, or the picked corpus is gone
            chat = gr.update(choices=names, value=names[0] if names else None)
        return (chat, gr.update(choices=names), gr.update(choices=names), self.corpora_rows(corpora), self.models_markdown(corpora))

    # ------------------------------------------------------------ reading

    def _begin(self, files: Sequence[str] | None, local_path: str | None, corpus: str | None):
        """Validate a read request and start it in the background; returns the job."""
        corpus = (corpus or "").strip()
        if not corpus:
            raise UploadError("name the corpus: pick one to add to, or type a new name")
        validate_name(corpus)
        files = [f for f in (files or []) if f]
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
        return self.jobs.start(corpus, lambda: self.uploads.store(corpus, files) + local)

    def read(self, files, local_path, corpus, chat_value) -> Iterator[tuple]:
        """Upload tab: start reading, stream progress, end with the report."""
        # outputs: progress, report, report_json, files, read_btn, cancel_btn, state, chat, target, pick, table, models
        skip = gr.skip()
        try:
            job = self._begin(files, local_path, corpus)
        except CorpusError as error:
            raise gr.Error(self.uploads.clean_message(str(error)), print_exception=False) from None
        corpus = job.corpus
        yield (progress_html(corpus, None), "", None, skip, gr.update(interactive=False),
               gr.update(visible=True, interactive=True, value="Cancel reading"), corpus, skip, skip, skip, self.corpora_rows(), skip)
        while not job.done.wait(POLL_SECONDS):
            yield (progress_html(corpus, job.progress, self.name, job.cancel.is_set()),) + (skip,) * 11
        done = (gr.update(interactive=True), gr.update(visible=False), "")
        if job.error is not None:
            yield ("", f"### Could not read into `{corpus}`\n\n{job.error}", None, skip, *done, *self.refresh(chat_value))
            return
        report = job.report
        yield ("", report_markdown(report, self.name), report, None, *done, *self.refresh(chat_value, select=corpus))

    def cancel(self, corpus: str) -> Any:
        if corpus and self.jobs.cancel(corpus):
            return gr.update(value="Cancelling\u2026", interactive=False)
        return gr.update(visible=False)

    def api_ingest(self, files: list[str] | None, corpus: str) -> dict:
        """/ingest: read uploaded files into a corpus (created if new); the ingest report."""
        try:
            job = self._begin(files, None, corpus)
        except CorpusError as error:
            raise gr.Error(self.uploads.clean_message(str(error)), print_exception=False) from None
        job.done.wait()
        if job.error is not None:
            raise gr.Error(job.error, print_exception=False)
        report = dict(job.report)
        report["message"] = report_message(report, self.name)
        return api_json(report)

    # ------------------------------------------------------------ corpora tab

    def pick(self, corpus: str | None) -> tuple:
        """Corpora tab: the documents of the picked corpus; hide any pending confirmation."""
        hidden = gr.update(visible=False)
        if not corpus:
            return "", hidden
        try:
            documents = self.service.documents(corpus)
            summary = self.service.corpus(corpus)
        except CorpusError as error:
            return str(error), hidden
        lines = [f"**{corpus}**: read with `{display_dir(summary['model'])}`; {len(documents):,} files in reading order"
                 + ("" if summary["complete"] else f" (incomplete: {summary['segments_saved']:,}/{summary['segments']:,} segments saved)"),
                 "| # | file | kind | pages | tokens | read |", "|---|---|---|---|---|---|"]
        for i, d in enumerate(documents[:500], 1):
            lines.append(f"| {i} | {self.name(d['path'])} | {d['kind']} | {d['pages'] or ''} | {d['tokens']:,} | {'yes' if d['saved'] else 'not yet'} |")
        return "\n".join(lines), hidden

    def ask_delete(self, corpus: str | None) -> tuple:
        if not corpus:
            return gr.update(visible=False), "", "Pick a corpus to delete."
        return (gr.update(visible=True), f"**Delete corpus `{corpus}`** and its uploaded files? This cannot be undone.", "")

    def delete(self, corpus: str | None, chat_value: str | None) -> tuple:
        # outputs: confirm box, message, docs, chat, target, pick, table, models
        try:
            if not corpus:
                raise CorpusError("pick a corpus to delete")
            if self.jobs.running(corpus):
                raise CorpusError(f"corpus {corpus} is being read: cancel reading first (Upload tab)")
            self.service.remove(corpus)
            self.uploads.remove(corpus)
            message = f"Deleted corpus `{corpus}`."
        except CorpusError as error:
            message = f"Could not delete: {error}"
        chat, target, _, table, models = self.refresh(chat_value)
        return (gr.update(visible=False), message, "", chat, target, gr.update(choices=self.names(), value=None), table, models)

    # ------------------------------------------------------------ chat

    def chat_corpus(self, corpus: str | None) -> tuple:
        """Chat tab: the as-of choices and the plain words about the corpus's model."""
        latest = ("latest (everything read)", LATEST)
        if not corpus:
            return gr.update(choices=[latest], value=LATEST), plain_summary(self.model_dir)
        try:
            summary = self.service.corpus(corpus)
            documents = self.service.documents(corpus)
        except CorpusError as error:
            return gr.update(choices=[latest], value=LATEST), str(error)
        choices = [latest] + [(f"after {self.name(d['path'])}", d["path"]) for d in documents if d["saved"]]
        about = plain_summary(self.corpus_model_dir(summary))
        if not summary["complete"]:
            about += (f"\n\n_Corpus `{corpus}` is not completely read ({summary['segments_saved']:,} of "
                      f"{summary['segments']:,} segments saved): answers come from what is read so far._")
        return gr.update(choices=choices, value=LATEST), about

    def ask(self, question: str, history: list, corpus: str | None, as_of: str | None) -> Iterator[tuple]:
        """Chat tab: stream the answer, then the sources as a collapsed block under it."""
        question = (question or "").strip()
        if not corpus:
            raise gr.Error("pick a corpus first (or read one in the Upload tab)", print_exception=False)
        if not question:
            raise gr.Error("type a question", print_exception=False)
        history = list(history or []) + [gr.ChatMessage(role="user", content=question)]
        answer = gr.ChatMessage(role="assistant", content="\u2026")
        pending = gr.ChatMessage(role="assistant", content="Scoring where in the corpus the answer came from\u2026",
                                 metadata={"title": "Sources", "status": "pending"})
        yield history + [answer], "", gr.update(interactive=False)
        text = ""
        try:
            for event in self.service.ask_stream(corpus, question, as_of=as_of or None):
                if event["type"] == "token":
                    text = (text + event["text"]).lstrip()
                    answer.content = text or "\u2026"
                    yield history + [answer, pending], gr.skip(), gr.skip()
                else:
                    result = event
        except CorpusError as error:
            answer.content = f"Could not answer: {self.uploads.clean_message(str(error))}"
            yield history + [answer], gr.skip(), gr.skip()
            return
        answer.content = result["answer"] or "(no answer)"
        notes = []
        if result.get("as_of"):
            notes.append(f"as of {self.name(result['as_of'])}")
        if not result["complete"]:
            notes.append(f"the corpus is not fully read: answered after segment {result['segment'] + 1:,} of {result['segments']:,}")
        if notes:
            answer.content += "\n\n_(" + "; ".join(notes) + ")_"
        found = result["sources"]
        title = "Sources (none found)"
        if found:
            title = f"Sources ({len(found)}): " + source_line(found[0], lambda path: Path(self.name(path)).name)
        sources = gr.ChatMessage(role="assistant", content=sources_markdown(found, self.name),
                                 metadata={"title": title, "status": "done", "duration": result["seconds"]})
        yield history + [answer, sources], gr.skip(), gr.skip()

    def api_ask(self, corpus: str, question: str, as_of: str | None = None) -> dict:
        """/ask: {"answer", "sources": [{"path", "page", "lines", "excerpt", "score", ...}], ...}."""
        try:
            return api_json(self.service.ask((corpus or "").strip(), question or "", as_of=as_of or None))
        except CorpusError as error:
            raise gr.Error(self.uploads.clean_message(str(error)), print_exception=False) from None

    def api_corpora(self) -> list[dict]:
        return self.corpora()


def build_app(service: CorpusService | None = None, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, local_paths: bool = True) -> gr.Blocks:
    """The Gradio app over `service` (default: `CorpusService()` on $RMTQA_HOME and the
    shipped model). `local_paths`: whether users may type a folder on the server to read."""
    ui = WebUI(service or CorpusService(), max_upload_mb=max_upload_mb, local_paths=local_paths)
    private = dict(api_visibility="private")
    names = ui.names()
    model_ready = has_weights(ui.model_dir)

    # Uploads are copied out of Gradio's cache when reading starts: clear what is a day old.
    with gr.Blocks(title="rmtqa", analytics_enabled=False, delete_cache=(6 * 3600, 24 * 3600)) as demo:
        gr.Markdown(INTRO)
        if not model_ready:
            gr.Markdown(f"> \u26a0\ufe0f {plain_summary(ui.model_dir)}", elem_id="no-model")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    chat_corpus = gr.Dropdown(names, value=names[0] if names else None, label="Corpus", scale=2, elem_id="chat-corpus")
                    as_of = gr.Dropdown([("latest (everything read)", LATEST)], value=LATEST, label="As of document", scale=3,
                                        info="answer from the memory right after an earlier document", elem_id="as-of")
                about = gr.Markdown(plain_summary(ui.model_dir), elem_id="about-model")
                chatbot = gr.Chatbot(label="Answers", height=460, elem_id="chatbot", feedback_options=None,
                                     placeholder="Pick a corpus and ask a question.")
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question about this corpus", show_label=False, scale=6,
                                          lines=1, max_lines=4, elem_id="question")
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                clear = gr.Button("Clear answers", size="sm")

            with gr.Tab("Upload", id="upload"):
                gr.Markdown(f"Upload several files at once or a **.zip** (PDF, text, HTML, EPUB, source code; up to "
                            f"{max_upload_mb:,g} MB per upload), or type a folder or repository path on this machine. "
                            "Reading creates the corpus or adds to it; a file uploaded again under the same name replaces the "
                            "earlier one. Reading runs in the background: you can keep asking meanwhile.")
                files = gr.File(label="Files", file_count="multiple", type="filepath", elem_id="upload-files")
                local_path = gr.Textbox(label="Folder or repository on this machine (optional)", elem_id="local-path",
                                        placeholder="/path/to/folder-or-repo" if local_paths else "turned off on this server",
                                        interactive=local_paths)
                target = gr.Dropdown(names, value=None, label="Corpus", allow_custom_value=True, elem_id="target-corpus",
                                     info="pick one to add to, or type a new name (letters, digits, . _ -)")
                with gr.Row():
                    read_btn = gr.Button("Read", variant="primary", elem_id="read")
                    cancel_btn = gr.Button("Cancel reading", variant="stop", visible=False, elem_id="cancel")
                progress = gr.HTML(elem_id="reading-progress")
                report = gr.Markdown(elem_id="ingest-report")
                with gr.Accordion("Full report (JSON)", open=False):
                    report_json = gr.JSON(label="ingest report")
                reading = gr.State("")

            with gr.Tab("Corpora", id="corpora"):
                table = gr.Dataframe(value=ui.corpora_rows(), headers=CORPORA_HEADERS, interactive=False, elem_id="corpora-table",
                                     wrap=True)
                refresh_btn = gr.Button("Refresh", size="sm")
                with gr.Row():
                    pick = gr.Dropdown(names, value=None, label="Corpus", scale=3, elem_id="pick-corpus")
                    delete_btn = gr.Button("Delete\u2026", variant="stop", scale=1, elem_id="delete")
                with gr.Group(visible=False) as confirm_box:
                    confirm_text = gr.Markdown()
                    with gr.Row():
                        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="confirm-delete")
                        keep_btn = gr.Button("No, keep it")
                corpora_message = gr.Markdown(elem_id="corpora-message")
                documents = gr.Markdown(elem_id="corpus-documents")

            with gr.Tab("Model", id="model"):
                card, images = ui.model_view()
                card = gr.Markdown(card, elem_id="model-card")
                gallery = gr.Gallery(images, label="Evaluation heatmaps", visible=bool(images), columns=2, height=480,
                                     object_fit="contain", elem_id="heatmaps")
                gr.Markdown("### Which model each corpus was read with")
                models = gr.Markdown(ui.models_markdown(ui.corpora()))

        # Named API endpoints (components hidden; gradio_client calls them by name).
        with gr.Row(visible=False):
            api_files = gr.File(file_count="multiple", type="filepath", label="files")
            api_corpus = gr.Textbox(label="corpus")
            api_report = gr.JSON(label="report")
            api_question = gr.Textbox(label="question")
            api_as_of = gr.Textbox("", label="as_of")
            api_answer = gr.JSON(label="answer")
            api_list = gr.JSON(label="corpora")
            api_ingest_btn, api_ask_btn, api_list_btn = gr.Button(), gr.Button(), gr.Button()
        api_ingest_btn.click(ui.api_ingest, [api_files, api_corpus], api_report, api_name="ingest",
                             concurrency_id="reading", concurrency_limit=1)
        api_ask_btn.click(ui.api_ask, [api_corpus, api_question, api_as_of], api_answer, api_name="ask",
                          concurrency_id="asking", concurrency_limit=ASK_CONCURRENCY)
        api_list_btn.click(ui.api_corpora, None, api_list, api_name="corpora")

        # UI events (private: the API is the three endpoints above).
        listing = [chat_corpus, target, pick, table, models]
        demo.load(lambda value: ui.refresh(value), chat_corpus, listing, **private)
        demo.load(ui.model_tab, None, [card, gallery], **private)  # a card or an evaluation may have landed since
        refresh_btn.click(lambda value: ui.refresh(value), chat_corpus, listing, **private)
        chat_corpus.change(ui.chat_corpus, chat_corpus, [as_of, about], **private)
        ask_args = dict(fn=ui.ask, inputs=[question, chatbot, chat_corpus, as_of], outputs=[chatbot, question, ask_btn],
                        concurrency_id="asking", concurrency_limit=ASK_CONCURRENCY, **private)
        for trigger in (ask_btn.click, question.submit):  # Ask is disabled until the answer and its sources are in
            trigger(**ask_args).then(lambda: gr.update(interactive=True), None, ask_btn, **private)
        clear.click(lambda: [], None, chatbot, **private)
        read_btn.click(ui.read, [files, local_path, target, chat_corpus],
                       [progress, report, report_json, files, read_btn, cancel_btn, reading, *listing],
                       concurrency_id="reading", concurrency_limit=1, show_progress="hidden", **private,
                       ).then(ui.chat_corpus, chat_corpus, [as_of, about], **private)
        cancel_btn.click(ui.cancel, reading, cancel_btn, queue=False, **private)
        pick.change(ui.pick, pick, [documents, confirm_box], **private)
        delete_btn.click(ui.ask_delete, pick, [confirm_box, confirm_text, corpora_message], **private)
        keep_btn.click(lambda: (gr.update(visible=False), ""), None, [confirm_box, corpora_message], **private)
        confirm_btn.click(ui.delete, [pick, chat_corpus], [confirm_box, corpora_message, documents, *listing], **private,
                          ).then(ui.chat_corpus, chat_corpus, [as_of, about], **private)

    demo.queue(default_concurrency_limit=8)
    demo.rmtqa = ui  # type: ignore[attr-defined]  # for tests and `rmtqa serve`
    return demo


def launch_app(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
               auth: tuple[str, str] | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               prevent_thread_lock: bool = False, quiet: bool = False):
    """Start the server (blocking unless `prevent_thread_lock`). Returns (app, local_url, share_url)."""
    return demo.launch(
        server_name=host, server_port=port, share=share, auth=auth, max_file_size=int(max_upload_mb * MB),
        prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=True, ssr_mode=False, pwa=False,
        mcp_server=False, enable_monitoring=False, run_history=False, footer_links=["api"], inbrowser=False,
    )

