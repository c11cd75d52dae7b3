"""`rmtqa ingest PATH... --dry-run [--json]`: read files, count tokens, report every file.

A dry run runs the loaders and the tokenizer only (no model weights): one JSON report with
`--json` (stdout carries nothing else), otherwise a progress bar on stderr and a readable
summary. Reading into a corpus (`--corpus`, no `--dry-run`) is the corpus layer's job
(`app.corpus_service.ingest_command(args)`); until it exists that says so in one line.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from app.cli import UserError
from app.paths import default_model_dir
from ingest.pipeline import ingest_paths
from ingest.report import IngestReport, Skipped
from ingest.stream import DocumentRecord
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.dry_run:
        try:
            service = importlib.import_module("app.corpus_service")
        except ModuleNotFoundError as error:
            if error.name != "app.corpus_service":
                raise
            print("rmtqa: error: reading into a corpus is not available yet; use --dry-run to check what would be read", file=sys.stderr)
            return 2
        return service.ingest_command(args)
    if args.corpus:
        print("rmtqa: note: --corpus is ignored with --dry-run", file=sys.stderr)
    tokenizer, note = load_dry_run_tokenizer(args.model)
    if args.json:
        report, _ = ingest_paths(args.paths, tokenizer, keep_tokens=False)
        print(report.to_json())
    else:
        report = _with_progress_bar(args.paths, tokenizer)
        print(summary(report, note))
    return 0 if report.documents else 1


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


def _with_progress_bar(paths: list[str], tokenizer) -> IngestReport:
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

        report, _ = ingest_paths(paths, tokenizer, progress=progress, keep_tokens=False)
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
