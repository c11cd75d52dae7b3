"""How the web UI shows the service's dicts: progress, ingest reports, sources, corpora.

Pure functions from the service's JSON-ready dicts to markdown / HTML / table rows; `name`
turns a stored path into what the user recognises (upload paths become file names).
"""
from __future__ import annotations

import html
import re
from typing import Callable

Namer = Callable[[str], str]
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def md_escape(text: str) -> str:
    """Text shown literally inside markdown (excerpts, file names)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


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


def progress_html(corpus: str, event: dict | None, name: Namer = str, cancelling: bool = False) -> str:
    """A progress bar and one line: segments done / total, tokens/s, ETA (or the scan)."""
    if event is None:
        text, fraction = f"Starting to read into <b>{html.escape(corpus)}</b>\u2026 (loading the model)", 0.0
    elif event.get("phase") == "scan":
        text = (f"Scanning files: {event['documents']:,} documents, {event['tokens']:,} tokens so far "
                f"\u2014 {html.escape(name(str(event.get('path', ''))))}")
        fraction = 0.0
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
        text += " \u2014 <b>cancelling after this segment</b>"
    percent = f"{100 * fraction:.1f}"
    return (
        f'<div class="rmtqa-progress" data-fraction="{fraction:.4f}">'
        f'<div style="background:#e5e7eb;border-radius:6px;height:12px;overflow:hidden">'
        f'<div style="background:#2563eb;height:12px;width:{percent}%"></div></div>'
        f'<p style="margin:6px 0">{text}</p></div>'
    )


def report_markdown(report: dict, name: Namer = str) -> str:
    """The ingest report for people: outcome, documents, and every skipped file and why."""
    corpus = report["corpus"]
    lines: list[str] = []
    if report.get("cancelled"):
        saved = report["first_segment_read"] + report["segments_read"]
        lines.append(f"### Reading cancelled: `{corpus}` has {saved:,} of {report['segments']:,} segments saved")
        lines.append("What was read is kept and can already be asked. Press **Read** again with the same corpus "
                     "and no files to continue where it stopped.")
    elif report.get("complete"):
        lines.append(f"### Corpus `{corpus}` is ready")
    else:
        lines.append(f"### Corpus `{corpus}` is not complete")
    rate = f" at {report['tokens_per_s']:,.0f} tokens/s" if report.get("tokens_per_s") else ""
    if report["segments_read"]:
        what = f"read {report['segments_read']:,} of {report['segments']:,} segments in {human_seconds(report['read_seconds'])}{rate}"
    else:
        what = f"nothing new to read ({report['segments']:,} segments saved)"
    lines.append(f"{len(report['documents']):,} files, {report['tokens']:,} tokens: {what}; "
                 f"{human_bytes(report['bytes'])} on disk.")
    if report.get("rebuilt"):
        lines.append(f"**Rebuilt from scratch:** {md_escape(report['rebuilt'])}")
    if report["skipped"]:
        count = len(report["skipped"])
        lines.append(f"#### Skipped {count:,} {'item' if count == 1 else 'items'} (not read)")
        rows = [f"| {md_escape(name(item['path']))} | {item.get('page') or ''} | {md_escape(item['reason'])} |" for item in report["skipped"]]
        lines.append("\n".join(["| file | page | reason |", "|---|---|---|", *rows]))
    else:
        lines.append("Nothing was skipped.")
    if report["documents"]:
        lines.append("#### Read")
        rows = [f"| {md_escape(name(entry['path']))} | {entry['kind']} | {entry.get('pages') or ''} | {entry['tokens']:,} |"
                for entry in report["documents"][:200]]
        lines.append("\n".join(["| file | kind | pages | tokens |", "|---|---|---|---|", *rows]))
        if len(report["documents"]) > 200:
            lines.append(f"\u2026 and {len(report['documents']) - 200:,} more (see the full report)")
    return "\n\n".join(lines)


def report_message(report: dict, name: Namer = str) -> str:
    """The report in one paragraph (for API clients)."""
    state = "cancelled" if report.get("cancelled") else ("complete" if report.get("complete") else "not complete")
    text = (f"corpus {report['corpus']}: {len(report['documents'])} files, {report['tokens']} tokens, "
            f"{report['segments_read']} of {report['segments']} segments read; {state}")
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
    return f"{name(source['path'])}{page}, {lines}"


def sources_markdown(sources: list[dict], name: Namer = str) -> str:
    if not sources:
        return "No single place in the corpus stood out for this answer."
    blocks = []
    for number, source in enumerate(sources, 1):
        excerpt = md_escape(source["excerpt"]) or "(empty)"
        blocks.append(f"**{number}. {md_escape(source_line(source, name))}** (score {source['score']:+.2f})\n\n> {excerpt}")
    return "\n\n".join(blocks)


CORPORA_HEADERS = ["corpus", "documents", "tokens", "segments", "model", "size on disk", "status"]


def corpus_row(summary: dict, model_name: Namer, reading: dict | None) -> list:
    if reading is not None:
        status = (f"being read: {reading['segments_done']:,}/{reading['segments_total']:,} segments"
                  if reading.get("phase") == "read" else "being read: scanning files")
    elif summary["complete"]:
        status = "ready"
    else:
        status = f"incomplete: {summary['segments_saved']:,}/{summary['segments']:,} segments saved"
    return [summary["name"], f"{summary['documents']:,}", f"{summary['tokens']:,}", f"{summary['segments']:,}", model_name(summary["model"]),
            human_bytes(summary["bytes"]), status]
