"""How the web UI shows the service's dicts: progress, ingest reports, sources, corpora, jobs.

Pure functions from the service's JSON-ready dicts to markdown / HTML / table rows; `name`
turns a stored path into what the user recognises (upload paths become file names). Every
string a user controls (file names, zip members, excerpts, answers, errors quoting them) is
escaped for where it goes: `md_text` for markdown, `html.escape` for HTML. `PublicView`
decides what of a dict may leave the server at all (no server paths).
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any, Callable

from app.corpus.uploads import UploadStore
from app.webui.model_tab import display_dir
from model.confidence import describe

Namer = Callable[[str], str]
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MIN_N = 20  # evaluation figures from fewer questions are not shown


def md_escape(text: str) -> str:
    """Text shown literally inside markdown (excerpts, answers); keeps its line breaks."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_text(text: str) -> str:
    """Text shown literally on one markdown line or table cell (file names, reasons): also
    control characters and line breaks become spaces, so no name can end a table row."""
    return md_escape(_CONTROL.sub(" ", text))


def html_text(text: str) -> str:
    """A message for a Gradio toast, which renders HTML: user text in it shows as text."""
    return html.escape(text, quote=False)


def plural(count: int, word: str, words: str | None = None) -> str:
    """"1 file", "2 files" (with thousands separators)."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def human_bytes(count: int | None) -> str:
    if count is None:
        return "\u2013"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class PublicView:
    """What of the service's dicts may leave the server (API answers, the UI's JSON): paths
    as users know them -- an upload by the name it was uploaded under, a model by its folder
    name (or its place in the repository) -- and no `RMTQA_HOME` anywhere, free text
    (reasons, errors) included."""

    def __init__(self, uploads: UploadStore, home: str | Path):
        self.uploads = uploads
        self.home = str(Path(home))

    def name(self, path: str) -> str:
        return self.uploads.display(path)

    @staticmethod
    def model(directory: str | Path | None) -> str | None:
        """A model directory as people read it (`display_dir`)."""
        return None if directory is None else display_dir(directory)

    def text(self, text: str) -> str:
        """`text` with uploads by their names and other paths under the home relative to it."""
        text = self.uploads.clean(text).replace(self.home + os.sep, "")
        return re.sub(re.escape(self.home) + r"(?![\w.-])", "RMTQA_HOME", text)

    def json(self, value: Any, *, api: bool = False) -> Any:
        """`value` made public; `api`: also every "path" key renamed "file" (gradio_client
        takes any {"path": str} dict in a result for a file to download, and would fail)."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                out["file" if api and key == "path" else key] = (
                    self.model(item) if key == "model" and isinstance(item, str) else self.json(item, api=api))
            return out
        if isinstance(value, list):
            return [self.json(item, api=api) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def progress_html(corpus: str, event: dict | None, name: Namer = str, cancelling: bool = False, queued: int | None = None) -> str:
    """A progress bar and one line: segments done / total, tokens/s, ETA (or the scan:
    files, pages and tokens so far, under a moving bar because its end is not known)."""
    moving = False
    if queued is not None:
        text, fraction = (f"Waiting for a free reading slot for <b>{html.escape(corpus)}</b> "
                          f"({plural(queued, 'reading')} ahead of it)"), 0.0
        moving = True
    elif event is None:
        text, fraction, moving = f"Starting to read into <b>{html.escape(corpus)}</b>\u2026 (loading the model)", 0.0, True
    elif event.get("phase") == "scan":
        pages = f" ({plural(event['pages'], 'page')})" if event.get("pages") else ""
        text = (f"Scanning files: {plural(event.get('files', 0), 'file')}{pages}, {event['tokens']:,} tokens so far "
                f"\u2014 {html.escape(name(str(event.get('path', ''))))}")
        fraction, moving = 0.0, True
    else:
        done, total = event["segments_done"], max(event["segments_total"], 1)
        fraction = done / total
        rate = event.get("tokens_per_s") or 0.0
        eta = human_seconds(event.get("eta_s")) if rate else "estimating"
        resumed = event["segments_total"] - event["segments_to_read"]
        note = f" (the first {resumed:,} were saved earlier)" if resumed else ""
        text = (f"Reading <b>{html.escape(corpus)}</b>: segment {done:,} of {event['segments_total']:,}{note} "
                f"\u00b7 {rate:,.0f} tokens/s \u00b7 about {eta} left")
    if cancelling:
        text += " \u2014 <b>cancelling\u2026</b>"
    width = "100" if moving else f"{100 * fraction:.1f}"
    bar = ("background:repeating-linear-gradient(45deg,#93c5fd 0 10px,#bfdbfe 10px 20px);background-size:28px 28px;"
           "animation:rmtqa-move 1s linear infinite" if moving else "background:#2563eb")
    return (
        f'<div class="rmtqa-progress" data-fraction="{fraction:.4f}">'
        "<style>@keyframes rmtqa-move{from{background-position:0 0}to{background-position:28px 0}}</style>"
        f'<div style="background:#e5e7eb;border-radius:6px;height:12px;overflow:hidden">'
        f'<div style="{bar};height:12px;width:{width}%"></div></div>'
        f'<p style="margin:6px 0">{text}</p></div>'
    )


def report_markdown(report: dict, name: Namer = str) -> str:
    """The ingest report for people: outcome, documents, and every skipped file and why."""
    corpus = report["corpus"]
    lines: list[str] = []
    if report.get("cancelled"):
        saved = report["first_segment_read"] + report["segments_read"]
        lines.append(f"### Reading cancelled: `{corpus}` has {saved:,} of {plural(report['segments'], 'segment')} saved")
        lines.append("What was read is kept and can already be asked. Press **Read** again with the same corpus "
                     "and no files to continue where it stopped.")
    elif report.get("complete"):
        lines.append(f"### Corpus `{corpus}` is ready")
    else:
        lines.append(f"### Corpus `{corpus}` is not complete")
    rate = f" at {report['tokens_per_s']:,.0f} tokens/s" if report.get("tokens_per_s") else ""
    if report["segments_read"]:
        what = f"read {report['segments_read']:,} of {plural(report['segments'], 'segment')} in {human_seconds(report['read_seconds'])}{rate}"
    else:
        what = f"nothing new to read ({plural(report['segments'], 'segment')} saved)"
    lines.append(f"{plural(len(report['documents']), 'file')}, {plural(report['tokens'], 'token')}: {what}; "
                 f"{human_bytes(report['bytes'])} on disk.")
    if report.get("rebuilt"):
        lines.append(f"**Rebuilt from scratch:** {md_text(report['rebuilt'])}")
    if report["skipped"]:
        count = len(report["skipped"])
        lines.append(f"#### Skipped {plural(count, 'item')} (not read)")
        rows = [f"| {md_text(name(item['path']))} | {item.get('page') or ''} | {md_text(item['reason'])} |" for item in report["skipped"]]
        lines.append("\n".join(["| file | page | reason |", "|---|---|---|", *rows]))
    else:
        lines.append("Nothing was skipped.")
    if report["documents"]:
        lines.append("#### Read")
        rows = [f"| {md_text(name(entry['path']))} | {entry['kind']} | {entry.get('pages') or ''} | {entry['tokens']:,} |"
                for entry in report["documents"][:200]]
        lines.append("\n".join(["| file | kind | pages | tokens |", "|---|---|---|---|", *rows]))
        if len(report["documents"]) > 200:
            lines.append(f"\u2026 and {len(report['documents']) - 200:,} more (see the full report)")
    return "\n\n".join(lines)


def report_message(report: dict, name: Namer = str) -> str:
    """The report in one paragraph (for API clients)."""
    state = "cancelled" if report.get("cancelled") else ("complete" if report.get("complete") else "not complete")
    text = (f"corpus {report['corpus']}: {plural(len(report['documents']), 'file')}, {plural(report['tokens'], 'token')}, "
            f"{report['segments_read']} of {plural(report['segments'], 'segment')} read; {state}")
    if report["skipped"]:
        text += "; skipped: " + "; ".join(_skipped_text(item, name) for item in report["skipped"])
    return text


def _skipped_text(item: dict, name: Namer) -> str:
    page = f" page {item['page']}" if item.get("page") else ""
    return f"{name(item['path'])}{page}: {item['reason']}"


def source_line(source: dict, name: Namer = str) -> str:
    first, last = source["lines"]
    lines = f"line {first}" if first == last else f"lines {first}\u2013{last}"
    page = f", page {source['page']}" if source.get("page") is not None else ""
    section = f" ({source['section']})" if source.get("section") else ""
    ocr = " (OCR)" if source.get("ocr") else ""
    return f"{name(source['path'])}{page}{ocr}, {lines}{section}"


SOURCES_NOTE = ("Ranked by how much more likely this answer became once the reader had read each place. "
                "Open one to read it; the cited lines are marked.")


def passage_markdown(source: dict, passage: dict | None) -> str:
    """A source opened: its page or lines, the cited ones marked (code keeps its lines)."""
    if not passage or not passage.get("lines"):
        return f"> {md_escape(source['excerpt']) or '(empty)'}"
    if passage.get("kind") == "code":
        width = len(str(passage["lines"][-1]["number"]))
        body = "\n".join(f"{'>' if line['cited'] else ' '} {line['number']:>{width}} | {line['text']}" for line in passage["lines"])
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", body)), default=0))
        text = f"{fence}text\n{body}\n{fence}"
    else:
        rows = []
        for line in passage["lines"]:
            content = md_text(line["text"]) or "&nbsp;"
            rows.append(f"**{line['number']}** <mark>{content}</mark>" if line["cited"] else f"{line['number']} {content}")
        text = "  \n".join(rows)
    return text + ("\n\n_(shortened: the rest is not shown here)_" if passage.get("cut") else "")


CORPORA_HEADERS = ["corpus", "files", "tokens", "segments", "model", "size on disk", "status"]
JOBS_HEADERS = ["corpus", "state", "progress", "files", "waiting or running for"]


def corpus_status(summary: dict, reading: dict | None = None) -> str:
    """"ready", "being read: ...", "partly read: ..." (a stopped reading), or the store's own state."""
    state = summary.get("state")
    if reading is not None or state == "reading":
        if reading and reading.get("phase") == "read":
            return f"being read: {reading['segments_done']:,}/{reading['segments_total']:,} segments"
        return "being read: scanning files" if reading else "being read"
    if state == "complete" or (state is None and summary["complete"]):
        return "ready"
    if state in (None, "partial"):
        return (f"partly read (stopped): {summary['segments_saved']:,}/{summary['segments']:,} segments saved; "
                "Read again to continue")
    if state == "damaged":
        return "damaged: Read it again to repair it, or delete it"
    return str(state)


def corpus_row(summary: dict, model_name: Callable[[Any], Any], reading: dict | None) -> list:
    return [summary["name"], f"{summary['documents']:,}", f"{summary['tokens']:,}", f"{summary['segments']:,}",
            model_name(summary["model"]) or "\u2013", human_bytes(summary["bytes"]), corpus_status(summary, reading)]


def answer_markdown(record: dict) -> str:
    """An answer (escaped: it is the model's text) with its notes (stopped, as of, partial)."""
    notes = []
    if record.get("stopped"):
        notes.append("stopped")
    if record.get("as_of"):
        notes.append(f"as of {record['as_of']}")
    if record.get("segments") and not record.get("complete", True):
        notes.append(f"the corpus is not fully read: answered after segment {record['segment']:,} of {record['segments']:,}")
    if record.get("mode") in ("reread", "deep"):
        fast = record.get("fast_answer")
        done = "re-read the source" if record["mode"] == "reread" else "read the whole corpus again with the question"
        notes.append(done + (f"; from the memory alone: {fast}" if fast and fast != record.get("answer") else ""))
    answer = md_escape(record.get("answer") or "") or ("(stopped before any answer)" if record.get("stopped") else "(no answer)")
    if record.get("abstained") and record.get("best_guess"):
        answer += f"\n\nBest guess, not confident: {md_escape(record['best_guess'])}"
    if record.get("confidence") is not None:
        answer += f"\n\n**Confidence: {describe(record['confidence'])}** ({record['confidence']:.0%} likely right, calibrated on held-out questions)"
    if record.get("trained_type") is False:
        notes.append("this is not a kind of question the reader was trained on: its answer is a guess in the shape of one it knows")
    if notes:
        answer += "\n\n_(" + md_text("; ".join(notes)) + ")_"
    return answer


def exchange_messages(question: str, record: dict, key: str) -> list[dict]:
    """One question and its answer as chat messages (Gradio's messages format): the answer
    with its notes, then the sources as a collapsed block whose children each open one
    place. `record` is what `WebUI` keeps in the chat history; `key` makes ids unique."""
    messages = [{"role": "user", "content": md_escape(question)}, {"role": "assistant", "content": answer_markdown(record)}]
    if record.get("stopped"):
        return messages
    sources = record.get("sources") or []
    if not sources:
        messages.append({"role": "assistant", "content": "No single place in the corpus stood out for this answer.",
                         "metadata": {"title": "Sources (none found)", "status": "done"}})
        return messages
    parent = f"sources-{key}"
    label = "Closest places" if record.get("abstained") else "Sources"
    title = f"{label} ({len(sources)}): " + source_line(sources[0], lambda path: Path(path).name)
    metadata: dict = {"title": md_text(title), "id": parent, "status": "done"}
    if record.get("seconds") is not None:
        metadata["duration"] = record["seconds"]
    messages.append({"role": "assistant", "content": SOURCES_NOTE, "metadata": metadata})
    for number, source in enumerate(sources, 1):
        messages.append({"role": "assistant", "content": passage_markdown(source, source.get("passage")),
                         "metadata": {"title": f"{number}\\. {md_text(source_line(source))}", "parent_id": parent,
                                      "id": f"{parent}-{number}", "status": "done"}})
    return messages


def jobs_rows(jobs: list[dict]) -> list[list]:
    """The reading jobs table (from `ReadingJob.view`s)."""
    rows = []
    for job in jobs:
        if job["segments_total"]:
            progress = f"{job['segments_done']:,}/{job['segments_total']:,} segments"
            if job["eta_s"] is not None and job["state"] == "reading":
                progress += f", about {human_seconds(job['eta_s'])} left"
        elif job["tokens_scanned"] is not None:
            progress = f"{job['tokens_scanned']:,} tokens scanned"
        else:
            progress = job["error"] or ""
        files = ", ".join(job["files"][:3]) + (f" and {len(job['files']) - 3:,} more" if len(job["files"]) > 3 else "")
        since = job["ran_s"] if job["ran_s"] is not None else job["waited_s"]
        rows.append([job["corpus"], job["state"], progress, files, human_seconds(since)])
    return rows
