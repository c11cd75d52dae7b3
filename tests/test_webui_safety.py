"""The web UI's safety and honesty without a running server: hostile names shown as text, no
server path in what leaves it, deletion confirmed on the server, logins that slow guessing,
credentials off the command line, fair reading jobs, chat history, the model's summary."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path

import pytest

from app.corpus.uploads import UploadStore
from app.webui.formatting import PublicView, corpus_row, exchange_messages, md_text, report_markdown

HOSTILE = '<a href="https://evil.example">x</a>|<img src=x onerror=alert(1)>'


def unescaped(text: str, char: str) -> int:
    """How many times `char` occurs in markdown `text` without a backslash before it."""
    return len(re.findall(r"(?<!\\)" + re.escape(char), text))


def test_hostile_names_are_text_in_markdown() -> None:
    cell = md_text(HOSTILE + "\nnext row")
    assert unescaped(cell, "<") == unescaped(cell, "|") == 0 and "\n" not in cell
    report = {"corpus": "c", "complete": True, "segments_read": 1, "segments": 1, "read_seconds": 1.0, "tokens_per_s": 10.0,
              "tokens": 10, "bytes": 100, "documents": [{"path": f"a.zip/{HOSTILE}", "kind": "text", "pages": None, "tokens": 10}],
              "skipped": [{"path": "b.zip/<b>bold</b>", "reason": "unsupported file type (<script>)"}]}
    text = report_markdown(report)
    for row in text.splitlines():
        if row.startswith("| ") and "---" not in row:
            assert row.count("|") - row.count("\\|") in (5, 4)  # every row keeps its columns
    assert unescaped(text, "<") == 0


def test_answers_and_sources_are_escaped_and_sources_open() -> None:
    source = {"path": "book.pdf", "page": 2, "lines": [3, 4], "excerpt": "e", "score": 1.0,
              "passage": {"kind": "pdf", "cut": False, "lines": [{"number": 3, "text": "<img src=x>", "cited": True},
                                                                   {"number": 4, "text": "plain", "cited": True},
                                                                   {"number": 5, "text": "after", "cited": False}]}}
    messages = exchange_messages("<b>q</b>", {"answer": "<script>x</script>", "sources": [source], "seconds": 1.0}, "k")
    user, answer, parent, child = messages
    assert user["content"] == "\\<b\\>q\\</b\\>" and "<script>" not in answer["content"]
    assert parent["metadata"]["id"] == child["metadata"]["parent_id"] and parent["metadata"]["status"] == "done"
    assert child["metadata"]["title"] == "1\\. book.pdf, page 2, lines 3\u20134"  # not a markdown list item
    assert "<mark>\\<img src=x\\></mark>" in child["content"] and "5 after" in child["content"]
    code = {**source, "passage": {"kind": "code", "cut": True, "lines": [{"number": 9, "text": "x = '```'", "cited": True}]}}
    opened = exchange_messages("q", {"answer": "a", "sources": [code]}, "k")[-1]["content"]
    assert opened.startswith("````text\n> 9 | x = '```'\n````") and "shortened" in opened
    stopped = exchange_messages("q", {"answer": "half", "stopped": True, "sources": []}, "k")
    assert len(stopped) == 2 and "stopped" in stopped[1]["content"]


def test_nothing_public_carries_a_server_path(tmp_path) -> None:
    home = tmp_path / "home"
    public = PublicView(UploadStore(home / "uploads"), home)
    upload = str(home / "uploads" / "docs" / "my book.pdf")
    report = {"documents": [{"path": upload}], "skipped": [{"path": f"{upload}/x", "reason": f"duplicate of {upload}"}],
              "model": str(home / "models" / "reader"), "sources": [upload], "error": f"cannot read {home}/corpora/docs/lock"}
    shown = public.json(report, api=True)
    assert str(home) not in json.dumps(shown)
    assert shown["documents"] == [{"file": "my book.pdf"}] and shown["skipped"][0]["reason"] == "duplicate of my book.pdf"
    assert shown["model"] == "reader" and shown["error"] == "cannot read corpora/docs/lock"
    assert public.text(f"{home} and {home}2/x") == f"RMTQA_HOME and {home}2/x"  # only the home itself
    assert PublicView.model(Path(__file__).resolve().parents[1] / "assets" / "default") == "assets/default"


def test_corpus_states_in_the_table() -> None:
    base = {"name": "c", "documents": 1, "tokens": 5, "segments": 4, "model": "m", "bytes": 10, "complete": False,
            "segments_saved": 2}
    assert corpus_row({**base, "state": "reading"}, str, None)[-1] == "being read"
    assert corpus_row({**base, "state": "partial"}, str, None)[-1].startswith("partly read (stopped): 2/4")
    assert corpus_row({**base, "state": "complete", "complete": True}, str, None)[-1] == "ready"
    assert corpus_row({**base, "state": "damaged"}, str, None)[-1].startswith("damaged")


@pytest.fixture
def ui(tmp_path):
    from app.service.corpus_service import CorpusService
    from app.webui.handlers import WebUI
    from tests.corpus_helpers import shared_model_dir

    return WebUI(CorpusService(tmp_path / "home", shared_model_dir()))


def test_a_single_call_of_the_hidden_delete_handler_deletes_nothing(ui, tmp_path) -> None:
    from tests.corpus_helpers import book_lines, write_text

    ui.service.ingest([write_text(tmp_path / "a.txt", book_lines(5))], "keep")
    message = ui.delete("keep", None, None)[1]  # what a crafted POST to the confirm handler does
    assert "nothing was confirmed" in message and ui.names() == ["keep"]
    assert "nothing was confirmed" in ui.delete("keep", {"corpus": "other", "until": time.time() + 60}, None)[1]
    assert "nothing was confirmed" in ui.delete("keep", {"corpus": "keep", "until": time.time() - 1}, None)[1]
    pending = ui.ask_delete("keep")[-1]  # the first step, as the page does it
    assert ui.delete("keep", pending, None)[1] == "Deleted corpus `keep`." and ui.names() == []


def test_the_documents_table_shows_hostile_zip_members_as_text(ui, tmp_path) -> None:
    import zipfile

    from tests.corpus_helpers import book_lines

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr('<a href="https:evil.example">click</a>.txt', "\n".join(book_lines(5)) + "\n")
        zf.writestr("pipe|name.txt", "\n".join(book_lines(5, seed=2)) + "\n")
    ui.service.ingest([], "zipped", uploads=ui.uploads.stage([archive]))
    table = ui.pick("zipped")[0]
    assert unescaped(table, "<") == 0 and "\\<a href=\"https:evil.example\"\\>click\\</a\\>.txt" in table
    assert "pipe\\|name.txt" in table and str(ui.service.home) not in table


def test_login_throttle_slows_guessing_and_keeps_the_right_user_in() -> None:
    from app.webui.auth import FREE_FAILURES, LoginThrottle

    waited: list[float] = []
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock[0] += seconds

    login = LoginThrottle("me", "s3cret", clock=lambda: clock[0], sleep=sleep)

    async def attempts() -> list[bool]:
        return list(await asyncio.gather(*[login("me", f"guess{i}") for i in range(30)]))

    assert asyncio.run(attempts()) == [False] * 30
    assert len(waited) == 30 - FREE_FAILURES and sum(waited) > 10 * 60  # 30 guesses take more than 10 minutes
    assert asyncio.run(login("me", "s3cret")) is True and login.failures == 0
    clock[0] += 3600
    assert login.delay() == 0.0


def test_credentials_from_a_file_or_the_environment(tmp_path) -> None:
    from app.webui.auth import AuthError, load_credentials

    secret = tmp_path / "auth"
    secret.write_text("me:pass:word\n")
    assert load_credentials(None, secret, environ={}) == ("me", "pass:word")
    assert load_credentials(None, None, environ={"RMTQA_AUTH": "u:p"}) == ("u", "p")
    assert load_credentials(None, None, environ={}) is None
    with pytest.raises(AuthError, match="USER:PASSWORD"):
        load_credentials("nopassword", None, environ={})
    with pytest.raises(AuthError, match="not both"):
        load_credentials("u:p", secret, environ={})


class FakeService:
    """Stands in for `CorpusService.ingest`: each corpus's reading blocks until released."""

    def __init__(self) -> None:
        self.release: dict[str, threading.Event] = {}
        self.started: list[str] = []

    def ingest(self, paths, corpus, *, uploads=None, max_tokens=None, progress=None, cancel=None):
        self.started.append(corpus)
        gate = self.release.setdefault(corpus, threading.Event())
        while not gate.wait(0.01):
            if cancel is not None and cancel.is_set():
                return {"corpus": corpus, "cancelled": True}
        return {"corpus": corpus, "cancelled": False}


def test_reading_jobs_share_slots_fairly_and_anyone_can_cancel() -> None:
    from app.service.corpus_service import CorpusLocked
    from app.webui.jobs import ReadingJobs

    service = FakeService()
    jobs = ReadingJobs(service, slots=2)  # type: ignore[arg-type]
    huge = jobs.start("huge", ["/big"])
    other = jobs.start("other", ["/big2"])
    small = jobs.start("small", ["/tiny"])
    with pytest.raises(CorpusLocked, match="being read already"):
        jobs.start("huge", ["/again"])
    deadline = time.time() + 5
    while len(service.started) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert sorted(service.started) == ["huge", "other"] and small.state == "queued" and jobs.ahead(small) == 0
    service.release.setdefault("other", threading.Event()).set()  # a slot frees: the small one goes next, not behind "huge"
    service.release.setdefault("small", threading.Event()).set()
    assert small.done.wait(5) and small.state == "done" and huge.state in ("starting", "reading")
    assert [view["state"] for view in (job.view(str) for job in jobs.jobs())][:1] == ["starting"]
    assert jobs.cancel("huge") and huge.done.wait(5) and huge.state == "cancelled"  # another client cancels it
    queued = jobs.start("late", ["/x"])
    jobs.start("later", ["/y"])
    jobs.start("last", ["/z"])
    assert jobs.cancel("last")  # cancelled while waiting: it never starts
    assert jobs.jobs()[0].corpus == "late" and other.done.wait(5)
    service.release.setdefault("late", threading.Event()).set()
    service.release.setdefault("later", threading.Event()).set()
    assert queued.done.wait(5) and "last" not in service.started


def test_chat_history_survives_and_is_per_corpus(tmp_path) -> None:
    from app.corpus.chat_history import ChatHistory

    history = ChatHistory(tmp_path / "chat.sqlite3")
    history.add("a", "Who?", {"answer": "Mary", "sources": []})
    history.add("b", "Where?", {"answer": "kitchen", "sources": []}, user="bob")
    again = ChatHistory(tmp_path / "chat.sqlite3")  # another process, after a restart
    assert [e["question"] for e in again.load("a")] == ["Who?"] and again.load("a")[0]["result"]["answer"] == "Mary"
    assert again.load("b") == [] and again.load("b", "bob")[0]["result"]["answer"] == "kitchen"
    assert again.clear("a") == 1 and again.load("a") == []


def test_the_model_summary_is_honest(tmp_path) -> None:
    from app.webui.model_tab import model_card, plain_summary

    model = tmp_path / "reader"
    (model / "eval").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    (model / "train_config.json").write_text(json.dumps({"tasks": ["qa1"]}))
    (model / "eval" / "qa1.json").write_text(json.dumps({"task": "qa1", "results": [
        {"length": 1000, "accuracy": 0.33, "n": 30}, {"length": 128000, "accuracy": 0.5, "n": 2}]}))
    (model / "eval" / "qa2.json").write_text(json.dumps({"task": "qa2", "results": [{"length": 4000, "accuracy": 0.0, "n": 10}]}))
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(model / "eval" / "map.png")
    (model / "MODEL_CARD.md").write_text("| what | how |\n|---|---|\n| memory | `[mem | 256 | mem]` |\n\n![map](eval/map.png)\n")
    summary = plain_summary(model)
    assert "**qa1**" in summary and "trained to answer" in summary and "qa2: " not in summary
    assert "only evaluated, not trained, on qa2" in summary
    assert "33% at 1k tokens (n = 30)" in summary and "50%" not in summary and "qa1 at 128k" in summary
    (model / "train_config.json").write_text(json.dumps({"tasks": ["qa1"], "needle_probability": 0.5}))  # document facts too
    assert "**needle**" in plain_summary(model)
    (model / "train_config.json").unlink()
    assert "has no record of what it was trained to answer. It was only evaluated, not trained, on qa1, qa2" in plain_summary(model)
    card = model_card(model)
    assert "| memory | `[mem \\| 256 \\| mem]` |" in card
    assert "![map](data:image/png;base64," in card and "(eval/map.png)" not in card
    assert "| 128k tokens | too few questions to say (n < 20) |" in card


def test_stop_ends_an_answer_and_errors_keep_the_question(ui, tmp_path) -> None:
    from types import SimpleNamespace

    import gradio as gr

    from tests.corpus_helpers import book_lines, write_text

    ui.service.ingest([write_text(tmp_path / "a.txt", book_lines(20))], "chat")
    request = SimpleNamespace(session_hash="s1", username=None)
    with pytest.raises(gr.Error, match="the question is too long"):
        next(ui.ask("w" * 78_000, [], "chat", "", None, request))  # refused before any output: the box keeps it

    answering = ui.ask("Where did the ship sail?", [], "chat", "", None, request)
    shown, cleared, ask_btn, stop_btn = next(answering)
    assert cleared == "" and stop_btn["visible"] is True and ask_btn["visible"] is False
    ui.stop(SimpleNamespace(session_hash="s2"))  # another session's Stop does nothing here
    ui.stop(request)
    *_, last = answering
    messages, _, ask_btn, stop_btn = last
    assert "stopped" in messages[-1]["content"] and len(messages) == 2 and ask_btn["visible"] is True
    [kept] = ui.service.history.load("chat")
    assert kept["question"] == "Where did the ship sail?" and kept["result"]["stopped"]

    *_, done = ui.ask("Where did the ship sail?", [], "chat", "", None, SimpleNamespace(session_hash="s3", username=None))
    assert done[0][2]["metadata"]["title"].startswith("Sources")  # answered in full, with its sources
    assert len(ui.chat_history("chat", request)) == 2 + len(done[0])  # both exchanges, after a reload
    assert ui.chat_corpus("chat", request)[3] == ui.chat_history("chat", request)
    assert ui.clear_history("chat", request) == [] and ui.service.history.load("chat") == []


def test_scan_progress_counts_files_and_pages() -> None:
    from app.webui.formatting import progress_html

    text = progress_html("c", {"phase": "scan", "path": "book.pdf", "files": 1, "pages": 234, "documents": 234, "tokens": 9000})
    assert "Scanning files: 1 file (234 pages), 9,000 tokens so far \u2014 book.pdf" in text and "rmtqa-move" in text
    assert "2 readings ahead of it" in progress_html("c", None, queued=2)


def test_as_of_a_page_in_the_chat(ui, tmp_path) -> None:
    from types import SimpleNamespace

    from tests.corpus_helpers import book_lines, write_pdf

    pdf = write_pdf(tmp_path / "voyage.pdf", [book_lines(5, seed=page) for page in range(3)])
    ui.service.ingest([pdf], "pages")
    choices = ui.chat_corpus("pages")[0]["choices"]
    assert choices[1] == ("after " + str(pdf), str(pdf))
    field = ui.as_of_pages("pages", str(pdf))
    assert field["visible"] is True and field["maximum"] == 3
    assert ui.as_of_pages("pages", "")["visible"] is False
    *_, last = ui.ask("Where?", [], "pages", str(pdf), 2, SimpleNamespace(session_hash="p", username=None))
    assert f"as of {pdf}#page=2" in last[0][1]["content"].replace("\\", "")
