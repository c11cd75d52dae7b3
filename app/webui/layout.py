"""The web UI's layout: tabs, components and the events that tie them to `WebUI`'s handlers.

Tabs: Chat (streamed answers with Stop, sources that open on the cited page or lines, "as of"
a document or page, a history per corpus; a reload comes back to the picked corpus), Upload (files, zips or a
server-side folder; live progress; cancel; every reading of the server, cancellable), Corpora
(list, documents, delete with a confirmation checked on the server), Model (card,
evaluation, heatmaps, which model each corpus was read with).

Named API endpoints for `gradio_client`:

    /ingest(files: list of files, corpus: str) -> the ingest report (+ "message", one line)
    /ask(corpus: str, question: str, as_of: str = "", mode: str = "") -> {"answer", "sources", "mode", ...}
        (mode: "fast", "reread", or "" for the best that answers within ~5 s)
    /corpora() -> [corpus summary]
    /jobs() -> [reading job: {"corpus", "state", "files", "segments_done", ...}]
    /cancel(corpus: str) -> the job, cancelling (any client may cancel any reading)

On the same port, an OpenAI-compatible API (`app.webui.openai_api`): GET /v1/models, POST
/v1/chat/completions.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from app.service.corpus_service import CorpusService
from app.webui.auth import LoginThrottle
from app.webui.formatting import CORPORA_HEADERS, JOBS_HEADERS, jobs_rows
from app.webui.handlers import DEFAULT_MAX_UPLOAD_MB, DEFAULT_MAX_UPLOAD_TOKENS, LATEST, MB, NO_CORPUS, PLACEHOLDER, WebUI
from app.webui.jobs import DEFAULT_SLOTS
from app.webui.model_tab import has_weights, plain_summary
from app.webui.openai_api import openai_api_routes

ASK_CONCURRENCY = 4
WATCHERS = 16  # requests that may wait on a reading at once (they only poll; jobs have their own slots)
JOBS_REFRESH_SECONDS = 2.0

INTRO = """# rmtqa
Ask questions about whole collections of documents. The reader goes through **everything**, segment by
segment, keeping a small memory; answers come from that memory, with the places they came from."""
NO_CORPORA = "_No corpora yet: read some documents in the **Upload** tab._"


def _example(component: gr.components.Component, value: Any) -> gr.components.Component:
    """Set the example the API page shows for `component` (Gradio's default for a textbox
    is "Hello!!", which is no valid corpus name)."""
    component.example_payload = component.example_value = lambda: value  # type: ignore[method-assign]
    return component


def build_app(service: CorpusService | None = None, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
              max_upload_tokens: int | None = DEFAULT_MAX_UPLOAD_TOKENS, local_paths: bool = True,
              reading_slots: int = DEFAULT_SLOTS) -> gr.Blocks:
    """The Gradio app over `service` (default: `CorpusService()` on $RMTQA_HOME and the
    shipped model). `local_paths`: whether users may type a folder on the server to read;
    `max_upload_tokens`: the most tokens one upload may add; `reading_slots`: readings at once."""
    ui = WebUI(service or CorpusService(), max_upload_mb=max_upload_mb, max_upload_tokens=max_upload_tokens,
               local_paths=local_paths, reading_slots=reading_slots)
    private = dict(api_visibility="private")
    corpora = ui.corpora()
    names = [c["name"] for c in corpora]
    model_ready = has_weights(ui.model_dir)

    # Uploads are copied out of Gradio's cache when reading is queued, and deleted there.
    with gr.Blocks(title="rmtqa", analytics_enabled=False, delete_cache=(6 * 3600, 24 * 3600)) as demo:
        gr.Markdown(INTRO)
        if not model_ready:
            gr.Markdown(f"> \u26a0\ufe0f {plain_summary(ui.model_dir)}", elem_id="no-model")
        # The corpus this browser's chat had picked last: a reload comes back to it.
        remembered = gr.BrowserState(None, storage_key="rmtqa-chat-corpus")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    chat_corpus = gr.Dropdown(names, value=names[0] if names else None, label="Corpus", scale=2, elem_id="chat-corpus")
                    as_of = gr.Dropdown([("latest (everything read)", LATEST)], value=LATEST, label="As of document", scale=3,
                                        info="answer from the memory right after an earlier document", elem_id="as-of")
                    page = gr.Number(None, label="page", precision=0, minimum=1, visible=False, scale=1, elem_id="as-of-page")
                about = gr.Markdown(plain_summary(ui.model_dir), elem_id="about-model")
                chatbot = gr.Chatbot(label="Answers", height=460, elem_id="chatbot", feedback_options=None, allow_tags=False,
                                     latex_delimiters=[], placeholder=PLACEHOLDER if names else NO_CORPUS)
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question about this corpus", show_label=False, scale=6,
                                          lines=1, max_lines=4, elem_id="question")
                    mode = gr.Radio([("auto", ""), ("fast", "fast"), ("re-read", "reread"), ("deep", "deep")], value="", label="Mode", scale=2, elem_id="ask-mode",
                                    info="re-read: look again where the memory points, knowing the question (exact values); deep: read everything again with the question")
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                    stop_btn = gr.Button("Stop", variant="stop", scale=1, visible=False, elem_id="stop")
                clear = gr.Button("Clear this corpus's chat history", size="sm", elem_id="clear-history")

            with gr.Tab("Upload", id="upload"):
                gr.Markdown(f"Upload several files at once or a **.zip** (PDF, text, HTML, EPUB, source code; up to "
                            f"{max_upload_mb:,g} MB"
                            + (f" and {max_upload_tokens:,} tokens" if max_upload_tokens else "")
                            + " per upload), or type a folder or repository path on this machine. "
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
                    report_json = gr.JSON(label="ingest report", elem_id="report-json")
                reading = gr.State("")
                gr.Markdown("### Readings on this server")
                jobs_table = gr.Dataframe(value=jobs_rows(ui.jobs_view()), headers=JOBS_HEADERS, interactive=False,
                                          elem_id="jobs-table", wrap=True)
                with gr.Row():
                    jobs_pick = gr.Dropdown([], value=None, label="Reading", scale=3, elem_id="jobs-pick")
                    jobs_cancel = gr.Button("Cancel this reading", variant="stop", scale=1, elem_id="jobs-cancel")
                jobs_message = gr.Markdown(elem_id="jobs-message")
                jobs_timer = gr.Timer(JOBS_REFRESH_SECONDS)

            with gr.Tab("Corpora", id="corpora"):
                no_corpora = gr.Markdown(NO_CORPORA, visible=not names, elem_id="no-corpora")
                table = gr.Dataframe(value=ui.corpora_rows(corpora), headers=CORPORA_HEADERS, interactive=False,
                                     elem_id="corpora-table", wrap=True)
                refresh_btn = gr.Button("Refresh", size="sm")
                with gr.Row():
                    pick = gr.Dropdown(names, value=None, label="Corpus", scale=3, elem_id="pick-corpus")
                    delete_btn = gr.Button("Delete\u2026", variant="stop", scale=1, elem_id="delete")
                with gr.Group(visible=False) as confirm_box:
                    confirm_text = gr.Markdown()
                    with gr.Row():
                        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="confirm-delete")
                        keep_btn = gr.Button("No, keep it")
                pending_delete = gr.State(None)
                corpora_message = gr.Markdown(elem_id="corpora-message")
                documents = gr.Markdown(elem_id="corpus-documents")

            with gr.Tab("Model", id="model"):
                card, images = ui.model_view()
                card = gr.Markdown(card, elem_id="model-card")
                gallery = gr.Gallery(images, label="Evaluation heatmaps", visible=bool(images), columns=2, height=480,
                                     object_fit="contain", elem_id="heatmaps")
                gr.Markdown("### Which model each corpus was read with")
                models = gr.Markdown(ui.models_markdown(corpora))

        # Named API endpoints (components hidden; gradio_client calls them by name).
        with gr.Row(visible=False):
            api_files = gr.File(file_count="multiple", type="filepath", label="files")
            api_corpus = _example(gr.Textbox(label="corpus"), "my-docs")
            api_report = gr.JSON(label="report")
            api_question = _example(gr.Textbox(label="question"), "Where is Mary?")
            api_as_of = _example(gr.Textbox("", label="as_of"), "")
            api_mode = _example(gr.Textbox("", label="mode"), "")
            api_answer = gr.JSON(label="answer")
            api_list = gr.JSON(label="corpora")
            api_jobs = gr.JSON(label="jobs")
            api_job = gr.JSON(label="job")
            api_buttons = [gr.Button() for _ in range(5)]
        api_buttons[0].click(ui.api_ingest, [api_files, api_corpus], api_report, api_name="ingest",
                             concurrency_id="reading", concurrency_limit=WATCHERS)
        api_buttons[1].click(ui.api_ask, [api_corpus, api_question, api_as_of, api_mode], api_answer, api_name="ask",
                             concurrency_id="asking", concurrency_limit=ASK_CONCURRENCY)
        api_buttons[2].click(ui.api_corpora, None, api_list, api_name="corpora")
        api_buttons[3].click(ui.api_jobs, None, api_jobs, api_name="jobs")
        api_buttons[4].click(ui.api_cancel, api_corpus, api_job, api_name="cancel")

        # UI events (private: the API is the endpoints above).
        listing = [chat_corpus, target, pick, table, models, no_corpora, chatbot]
        # The history of the picked corpus only once it is picked: a handler reading the picker's
        # build-time value at the same time could land after the right one and show another
        # corpus's chat.
        demo.load(ui.load, [chat_corpus, remembered], listing, **private,
                  ).then(ui.chat_corpus, chat_corpus, [as_of, page, about, chatbot], **private)
        demo.load(ui.model_tab, None, [card, gallery], **private)  # a card or an evaluation may have landed since
        refresh_btn.click(lambda value: ui.refresh(value), chat_corpus, listing, **private)
        chat_corpus.change(ui.chat_corpus, chat_corpus, [as_of, page, about, chatbot], **private)
        chat_corpus.change(None, chat_corpus, remembered, js="(corpus) => corpus", **private)  # in the browser only
        as_of.change(ui.as_of_pages, [chat_corpus, as_of], page, **private)
        ask_args = dict(fn=ui.ask, inputs=[question, chatbot, chat_corpus, as_of, page, mode], outputs=[chatbot, question, ask_btn, stop_btn],
                        concurrency_id="asking", concurrency_limit=ASK_CONCURRENCY, **private)
        for trigger in (ask_btn.click, question.submit):  # Ask is hidden until the answer and its sources are in
            trigger(**ask_args).then(lambda: (gr.update(visible=True), gr.update(visible=False)), None, [ask_btn, stop_btn], **private)
        stop_btn.click(ui.stop, None, None, queue=False, **private)
        clear.click(ui.clear_history, chat_corpus, chatbot, **private)
        read_btn.click(ui.read, [files, local_path, target, chat_corpus],
                       [progress, report, report_json, files, read_btn, cancel_btn, reading, *listing],
                       concurrency_id="reading", concurrency_limit=WATCHERS, show_progress="hidden", **private,
                       ).then(ui.chat_corpus, chat_corpus, [as_of, page, about, chatbot], **private)
        cancel_btn.click(ui.cancel, reading, cancel_btn, queue=False, **private)
        jobs_timer.tick(ui.jobs_panel, jobs_pick, [jobs_table, jobs_pick], queue=False, show_progress="hidden", **private)
        jobs_cancel.click(ui.cancel_job, jobs_pick, jobs_message, queue=False, **private)
        pick.change(ui.pick, pick, [documents, confirm_box, pending_delete], **private)
        delete_btn.click(ui.ask_delete, pick, [confirm_box, confirm_text, corpora_message, pending_delete], **private)
        keep_btn.click(lambda: (gr.update(visible=False), "", None), None, [confirm_box, corpora_message, pending_delete], **private)
        confirm_btn.click(ui.delete, [pick, pending_delete, chat_corpus], [confirm_box, corpora_message, documents, pending_delete, *listing],
                          **private).then(ui.chat_corpus, chat_corpus, [as_of, page, about, chatbot], **private)

    demo.queue(default_concurrency_limit=8)
    demo.rmtqa = ui  # type: ignore[attr-defined]  # for tests and `rmtqa serve`
    return demo


def launch_app(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
               auth: LoginThrottle | tuple[str, str] | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               prevent_thread_lock: bool = False, quiet: bool = False):
    """Start the server (blocking unless `prevent_thread_lock`), with the OpenAI-compatible API
    on the same port behind the same login. Returns (app, local_url, share_url)."""
    login = LoginThrottle(*auth) if isinstance(auth, tuple) else auth
    api = openai_api_routes(demo.rmtqa.service, demo.rmtqa.public, login)  # type: ignore[attr-defined]
    return demo.launch(
        server_name=host, server_port=port, share=share, auth=login, max_file_size=int(max_upload_mb * MB),
        app_kwargs={"routes": api},  # Gradio builds its FastAPI app in launch(): the API is in it from the start
        prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=True, ssr_mode=False, pwa=False,
        mcp_server=False, enable_monitoring=False, run_history=False, footer_links=["api"], inbrowser=False,
    )
