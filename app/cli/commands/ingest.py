"""`rmtqa ingest PATH... --dry-run [--json]`: read files, count tokens, report every file.

A dry run runs the loaders and the tokenizer only (no model weights): one JSON report with
`--json` (stdout carries nothing else), otherwise a progress bar on stderr and a readable
summary. Reading into a corpus (`--corpus`, no `--dry-run`) goes through the corpus service
with a progress bar on stderr and prints the ingest report (`print_report`, also `rmtqa rm`'s).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.errors import UserError
from app.cli.progress import run_with_progress
from app.cli.threads import configure_threads
from app.paths import default_model_dir
from ingest.pipeline import ingest_paths
from ingest.records import DocumentRecord
from ingest.report import FileEntry, IngestReport, Skipped
from ingest.tokenizers import ByteTokenizer

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")
SUMMARY_ROWS = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="read books, PDFs, code and archives into a token stream",
        description="Read files, folders, code repositories and zip archives; report every file.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders, repositories or .zip archives")
    parser.add_argument("--dry-run", action="store_true", help="run the loaders and the tokenizer only (no model, nothing saved)")
    parser.add_argument("--json", action="store_true", help="print one JSON report on stdout and nothing else")
    parser.add_argument("--model", type=Path, help=f"model directory whose tokenizer to use (default: {default_model_dir()})")
    parser.add_argument("--corpus", metavar="NAME", help="corpus to read into (not with --dry-run)")
    parser.add_argument("--ocr", action="store_true",
                        help="read PDF pages without a text layer (scans) by OCR; needs the ocr extra (make ocr). "
                             "A corpus read with it keeps it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.dry_run:
        return _read_into_corpus(args)
    if args.corpus:
        print("rmtqa: note: --corpus is ignored with --dry-run", file=sys.stderr)
    tokenizer, note = load_dry_run_tokenizer(args.model)
    if args.json:
        report, _ = ingest_paths(args.paths, tokenizer, keep_tokens=False, ocr=args.ocr)
        print(report.to_json())
    else:
        report = _with_progress_bar(args.paths, tokenizer, args.ocr)
        print(summary(report, note))
    return 0 if report.documents else 1


def _read_into_corpus(args: argparse.Namespace) -> int:
    from app.service.corpus_service import CorpusService

    if not args.corpus:
        raise UserError("give --corpus NAME to read into a corpus (or --dry-run to only check the files)")
    configure_threads()
    service = CorpusService(model_dir=args.model)
    report = run_with_progress(lambda bar: service.ingest(args.paths, args.corpus, progress=bar, ocr=args.ocr))
    print_report(report, args.json)
    return 0 if report["complete"] else 1


def print_report(report: dict, as_json: bool) -> None:
    """An ingest report on stdout (`rmtqa ingest --corpus`, `rmtqa rm NAME PATH...`): one JSON
    line with `as_json`, else the files read and skipped and a line about the reading."""
    if report.get("rebuilt"):
        print(f"rmtqa: note: corpus {report['corpus']} was rebuilt from scratch: {report['rebuilt']}", file=sys.stderr)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    rep = IngestReport(
        tokenizer=report["tokenizer"], tokens=report["tokens"], seconds=report["scan_seconds"],
        documents=[FileEntry(**entry) for entry in report["documents"]],
        skipped=[Skipped(item["path"], item["reason"], item.get("page")) for item in report["skipped"]],
    )
    print(summary(rep))
    if report["segments_read"]:
        what = f"read {report['segments_read']:,} of {report['segments']:,} segments from segment {report['first_segment_read'] + 1:,}"
        rate = f" at {report['tokens_per_s']:,.0f} tokens/s" if report.get("tokens_per_s") else ""
    else:
        what, rate = f"nothing changed ({report['segments']:,} segments saved)", ""
    print(f"Corpus {report['corpus']}: {what} in {report['read_seconds']:.1f} s{rate}; "
          f"{report['bytes'] / 1e6:,.1f} MB on disk ({report['bytes_per_token']:.1f} bytes/token)")
    if report["complete"]:
        print(f"  memory sha256 {report['memory_sha256']}")
    else:
        print("  not complete: run the same command again to continue")


def load_dry_run_tokenizer(model_dir: Path | None):
    """(tokenizer, note): the model's tokenizer, or UTF-8 bytes when no model is shipped yet."""
    from model.tokenizer import load_tokenizer

    if model_dir is not None:
        if not model_dir.is_dir():
            raise UserError(f"no model directory at {model_dir}")
        return load_tokenizer(model_dir), ""
    default = default_model_dir()
    if any((default / name).is_file() for name in TOKENIZER_FILES):
        return load_tokenizer(default), ""
    return ByteTokenizer(), f"no model at {default}: tokens are counted as UTF-8 bytes"


def _with_progress_bar(paths: list[str], tokenizer, ocr: bool) -> IngestReport:
    from tqdm import tqdm

    with tqdm(unit=" files", file=sys.stderr, disable=None, dynamic_ncols=True, leave=False) as bar:
        tokens, pages, last = 0, 0, None

        def progress(result: DocumentRecord | Skipped) -> None:
            nonlocal tokens, pages, last
            if isinstance(result, DocumentRecord):
                tokens += result.tokens
                pages += result.page is not None
                bar.update(result.path != last)  # files, not the pages of one PDF
                last = result.path
            shown = f"{pages:,} pages, " if pages else ""
            bar.set_postfix_str(f"{shown}{tokens:,} tokens | {result.path}", refresh=False)

        report, _ = ingest_paths(paths, tokenizer, progress=progress, keep_tokens=False, ocr=ocr)
    return report


def summary(report: IngestReport, note: str = "") -> str:
    """The report for people: totals, the files read (the first few), every skip."""
    pages = sum(entry.pages or 0 for entry in report.documents)
    page_text = f", {pages:,} PDF pages" if pages else ""
    lines = [
        f"Read {len(report.documents):,} {'file' if len(report.documents) == 1 else 'files'}{page_text}: {report.tokens:,} tokens in {report.seconds:.1f} s "
        f"(tokenizer {report.tokenizer})"
    ]
    if note:
        lines.append(f"  note: {note}")
    width = max((len(entry.path) for entry in report.documents[:SUMMARY_ROWS]), default=0)
    for entry in report.documents[:SUMMARY_ROWS]:
        pages_col = f"{entry.pages} pages" if entry.pages else entry.kind
        lines.append(f"  {entry.path:<{width}}  {pages_col:>10}  {entry.tokens:>12,} tokens")
    if len(report.documents) > SUMMARY_ROWS:
        lines.append(f"  ... and {len(report.documents) - SUMMARY_ROWS:,} more files (--json lists them all)")
    if report.skipped:
        lines.append(f"Skipped {len(report.skipped):,}:")
        lines.extend(f"  {item.path}{f' (page {item.page})' if item.page else ''}: {item.reason}" for item in report.skipped)
    return "\n".join(lines)
