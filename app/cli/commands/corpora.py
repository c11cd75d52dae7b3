"""`rmtqa corpora [NAME] [--json]` lists corpora (or the documents of one); `rmtqa rm NAME
[PATH...] [--yes]` deletes a corpus (with its uploads and chat history; on a terminal it asks
first), or drops some of its paths and re-reads from the first affected segment."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STATES = {"reading": "being read", "partial": "partly read: ingest again to continue", "complete": "complete"}


def register(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("corpora", help="list corpora, or the documents of one",
                                    description="List corpora with their state, size and model; with NAME, the documents "
                                                "of that corpus in reading order.")
    listing.add_argument("corpus", nargs="?", metavar="NAME", help="list this corpus's documents")
    listing.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    listing.set_defaults(func=run_list)

    remove = subparsers.add_parser("rm", help="delete a corpus (or drop paths from it)",
                                   description="Delete a corpus, or with PATHs drop those paths from it and re-read what follows them.")
    remove.add_argument("corpus", metavar="NAME")
    remove.add_argument("paths", nargs="*", metavar="PATH", help="paths given to `rmtqa ingest` to drop (default: delete the whole corpus)")
    remove.add_argument("--model", type=Path, help="model directory to re-read with (with PATHs)")
    remove.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation on a terminal")
    remove.set_defaults(func=run_remove)


def run_list(args: argparse.Namespace) -> int:
    from app.service.corpus_service import CorpusService

    service = CorpusService()
    if args.corpus:
        return _documents(service, args.corpus, args.json)
    corpora = service.list_corpora()
    if args.json:
        print(json.dumps(corpora, ensure_ascii=False))
        return 0
    if not corpora:
        print("No corpora yet: create one with `rmtqa ingest PATH... --corpus NAME`.")
        return 0
    rows = [["CORPUS", "FILES", "TOKENS", "SEGMENTS", "SIZE", "STATE", "MODEL"]]
    for c in corpora:
        state = STATES.get(c["state"], c["state"])
        if c["state"] != "complete" and c["segments"]:
            state += f" ({c['segments_saved']:,}/{c['segments']:,} segments saved)"
        rows.append([c["name"], f"{c['documents']:,}", f"{c['tokens']:,}", f"{c['segments']:,}", f"{c['bytes'] / 1e6:,.1f} MB",
                     state, c["model"] or "-"])
    _print_table(rows, right={1, 2, 3, 4})
    return 0


def _documents(service, corpus: str, as_json: bool) -> int:
    documents = service.documents(corpus)
    if as_json:
        print(json.dumps(documents, ensure_ascii=False))
        return 0
    rows = [["#", "FILE", "KIND", "PAGES", "TOKENS", "SEGMENTS", "READ"]]
    for number, d in enumerate(documents, 1):
        rows.append([str(number), d["path"], d["kind"], str(d["pages"] or ""), f"{d['tokens']:,}",
                     f"{d['segment_start']:,}-{d['segment_end']:,}", "yes" if d["saved"] else "not yet"])
    _print_table(rows, right={0, 3, 4})
    files = len(documents)
    print(f"{files:,} {'file' if files == 1 else 'files'}; ask as of one with `rmtqa ask {corpus} QUESTION --as-of FILE`")
    return 0


def _print_table(rows: list[list[str]], right: set[int]) -> None:
    """Columns aligned, the header row first (numbers right-aligned)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(width) if i in right else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())


def run_remove(args: argparse.Namespace) -> int:
    from app.cli.commands.ingest import print_report
    from app.cli.progress import run_with_progress
    from app.cli.threads import configure_threads
    from app.service.corpus_service import CorpusService

    service = CorpusService(model_dir=args.model)
    if not args.paths:
        if not args.yes and sys.stdin.isatty():
            summary = service.corpus(args.corpus)  # fails on an unknown corpus before asking
            answer = input(f"Delete corpus {args.corpus} ({summary['documents']:,} {'file' if summary['documents'] == 1 else 'files'}, "
                           f"{summary['tokens']:,} tokens), its uploaded files and chat history? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print(f"Kept corpus {args.corpus}.")
                return 1
        service.remove(args.corpus)
        print(json.dumps({"removed": args.corpus}) if args.json else f"Removed corpus {args.corpus}.")
        return 0
    configure_threads()
    report = run_with_progress(lambda bar: service.remove_documents(args.corpus, args.paths, progress=bar))
    print_report(report, args.json)
    return 0 if report["complete"] else 1
