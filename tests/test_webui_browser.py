"""The web UI in a real browser: headless Chromium from Debian's packages, driven by
Playwright (`executable_path=/usr/bin/chromium`; nothing is downloaded at test time).

Starts on an empty home when it runs alone (the first screen points to Upload); then the
user has another corpus, one the pickers list first (the chat must still land on the new
corpus after reading and after a reload). Uploads real PDFs from ../shared/data, watches the
reading finish (with the skipped pages and their reasons in the report), asks a question,
opens a source on its cited page, reloads the page (the corpus and its chat are still there),
checks the Model tab (a `|` inside a table cell, the card's image shown) and deletes the
corpus. No request may fail (4xx/5xx) or leave the machine. Screenshots go to
test-artifacts/webui/.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.corpus_helpers import book_lines, write_text
from tests.webui_helpers import PDF_SAMPLE, REPO, SHARED_DATA, running_server

# Gradio's queue summarises its own event timings with pandas, which warns on pandas 3.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")
CHROMIUM = Path(os.environ.get("RMTQA_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts" / "webui"
SCANNED_PDF = SHARED_DATA / "pdf-samples" / "007-imagemagick-images" / "imagemagick-images.pdf"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture
def page():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver; .ci/run does)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("python playwright is not installed (pip install playwright; no browser download needed)")
    if not PDF_SAMPLE.is_file() or not SCANNED_PDF.is_file():
        pytest.skip(f"sample PDFs missing under {SHARED_DATA}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=60_000)  # a busy CI machine is slow; every wait ends as soon as it can
    profile = tempfile.mkdtemp(prefix="rmtqa-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=FLAGS, viewport={"width": 1280, "height": 1000})
            try:
                page = context.new_page()
                page.set_default_timeout(60_000)
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_browser_upload_read_ask_sources(page, tmp_path) -> None:
    server = running_server()
    try:
        upload_read_ask_delete(page, server, tmp_path)
    except Exception:
        shot(page, "failure")  # what the page showed when it failed
        raise


def upload_read_ask_delete(page, server, tmp_path) -> None:
    from playwright.sync_api import expect

    elsewhere: list[str] = []  # the UI needs nothing from the internet (no CDN, fonts or analytics)
    page.on("request", lambda request: None if request.url.startswith((server.url, "data:", "blob:")) else elsewhere.append(request.url))
    failed: list[str] = []
    page.on("response", lambda response: failed.append(f"{response.status} {response.url}") if response.status >= 400 else None)
    page.goto(server.url)
    expect(page.get_by_role("tab", name="Upload")).to_be_visible()
    if not server.ui.names():  # the first screen of a new user points to Upload
        expect(page.locator("#chatbot")).to_contain_text("No corpus yet")
        page.get_by_role("tab", name="Corpora").click()
        expect(page.locator("#no-corpora")).to_contain_text("No corpora yet")
    # A corpus read earlier and listed before "papers" (corpora are listed by name): the chat
    # opens on it, and has to move to "papers" once that is read.
    assert "papers" not in server.ui.names()
    made = not server.ui.names() or server.ui.names()[0] > "papers"
    if made:
        server.ui.service.ingest([write_text(tmp_path / "notes.txt", book_lines(4, seed=7))], "a-notes")
        page.reload()
    expect(page.locator("#chat-corpus input")).to_have_value(server.ui.names()[0])

    # Upload two real PDFs (one of them has pages without a text layer) into a new corpus.
    page.get_by_role("tab", name="Upload").click()
    page.locator("#upload-files input[type=file]").set_input_files([str(PDF_SAMPLE), str(SCANNED_PDF)])
    expect(page.locator("#upload-files").get_by_role("row")).to_have_count(2)  # both uploaded
    target = page.locator("#target-corpus input")
    target.fill("papers")
    target.press("Enter")
    page.locator("#read").click()

    # Reading progress (segments done / total, tokens/s, ETA), unless reading beat the first poll.
    progress = page.locator("#reading-progress")
    report = page.locator("#ingest-report")
    expect(progress.get_by_text(re.compile(r"segment \d+ of \d+ .* tokens/s .* left")).or_(report.get_by_text("is ready"))).to_be_visible()
    shot(page, "1-reading")
    expect(report).to_contain_text("Corpus papers is ready", timeout=120_000)
    expect(report).to_contain_text(re.compile(r"Skipped \d+ items?"))
    expect(report).to_contain_text("no text layer")
    expect(report).to_contain_text(PDF_SAMPLE.name)
    shot(page, "2-report")

    # Ask: the new corpus is already picked in the Chat tab.
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-corpus input")).to_have_value("papers")
    about = page.locator("#about-model")  # what the reader was trained for and how it scored, where one asks
    expect(about).to_contain_text("Where is Mary?")
    expect(about).to_contain_text("50% at 1k tokens")
    page.locator("#question textarea").fill("What does the document say about the length of words?")
    page.locator("#ask").click()
    chat = page.locator("#chatbot")
    # Sources: a collapsed block whose title already names the first place (file, page, lines).
    title = chat.get_by_text(re.compile(r"Sources \(\d\): [\w.-]+\.pdf, page \d+, lines? \d+"))
    expect(title).to_be_visible(timeout=120_000)
    expect(page.locator("#ask")).to_be_enabled()  # Ask is disabled until the whole answer event has completed
    answer = chat.locator(".message.bot").first
    expect(answer).not_to_have_text(re.compile(r"^\s*(\u2026|Could not answer.*)?\s*$"))
    title.click()
    first = chat.get_by_text(re.compile(r"^1\. .*, page \d+, lines? \d+")).first
    expect(first).to_be_visible()
    first.click()  # the source opens on its page, the cited lines marked
    expect(chat.locator("mark").first).to_be_visible()
    shot(page, "3-answer-sources")

    page.reload()  # the chat of this corpus survives a reload
    expect(page.locator("#chat-corpus input")).to_have_value("papers")
    expect(page.locator("#chatbot")).to_contain_text("What does the document say about the length of words?")
    expect(page.locator("#chatbot").get_by_text(re.compile(r"Sources \(\d\): "))).to_be_visible()

    page.get_by_role("tab", name="Model").click()
    expect(page.locator("#model-card")).to_contain_text("A tiny random model for the web UI tests.")
    expect(page.locator("#model-card")).to_contain_text("Evaluation eval/qa1.json")
    expect(page.locator("#model-card td").get_by_text("[memory | 32 tokens | memory]")).to_be_visible()  # not cut at its |
    expect(page.locator("#model-card img")).to_have_count(1)
    assert page.locator("#model-card img").evaluate("image => image.complete && image.naturalWidth") > 0
    expect(page.locator("#heatmaps img").first).to_be_visible()
    shot(page, "4-model")

    # Corpora: listed with documents, tokens, segments, model, size; delete asks first.
    page.get_by_role("tab", name="Corpora").click()
    expect(page.locator("#corpora-table")).to_contain_text("papers")
    expect(page.locator("#corpora-table")).to_contain_text("ready")
    page.locator("#pick-corpus input").click()
    page.get_by_role("option", name="papers").click()
    expect(page.locator("#corpus-documents")).to_contain_text(SCANNED_PDF.name)
    page.locator("#delete").click()
    expect(page.get_by_text("cannot be undone")).to_be_visible()
    shot(page, "5-corpora-delete")
    page.locator("#confirm-delete").click()
    expect(page.locator("#corpora-message")).to_contain_text("Deleted corpus papers")
    expect(page.locator("#corpora-table")).not_to_contain_text("papers")
    assert "papers" not in server.ui.names()
    assert elsewhere == [] and failed == []
    if made:
        server.ui.service.remove("a-notes")
