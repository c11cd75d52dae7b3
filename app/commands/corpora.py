"""`rmtqa corpora [--json]` lists corpora; `rmtqa rm NAME [PATH...]` deletes a corpus, or
drops some of its paths and re-reads from the first affected segment."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("corpora", help="list corpora", description="List corpora with their size and model.")
    listing.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    listing.set_defaults(func=run_list)

    remove = subparsers.add_parser("rm", help="delete a corpus (or drop paths from it)",
                                   description="Delete a corpus, or with PATHs drop those paths from it and re-read what follows them.")
    remove.add_argument("corpus", metavar="NAME")
    remove.add_argument("paths", nargs="*", metavar="PATH", help="paths given to `rmtqa ingest` to drop (default: delete the whole corpus)")
    remove.add_argument("--model", type=Path, help="model directory to re-read with (with PATHs)")
    remove.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    remove.set_defaults(func=run_remove)


def run_list(args: argparse.Namespace) -> int:
    from app.service import CorpusService

    corpora = CorpusService().list_corpora()
    if args.json:
        print(json.dumps(corpora, ensure_ascii=False))
        return 0
    if not corpora:
        print("No corpora yet: create one with `rmtqa ingest PATH... --corpus NAME`.")
        return 0
    width = max(len(c["name"]) for c in corpora)
    for c in corpora:
        state = "" if c["complete"] else f"  (incomplete: {c['segments_saved']:,}/{c['segments']:,} segments)"
        print(f"{c['name']:<{width}}  {c['documents']:>6,} files  {c['tokens']:>12,} tokens  {c['segments']:>8,} segments  "
              f"{c['bytes'] / 1e6:>8,.1f} MB  model {c['model']}{state}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from app.corpus_service import configure_threads, print_report, run_with_progress
    from app.service import CorpusService

    service = CorpusService(model_dir=args.model)
    if not args.paths:
        service.remove(args.corpus)
        print(json.dumps({"removed": args.corpus}) if args.json else f"Removed corpus {args.corpus}.")
        return 0
    configure_threads()
    report = run_with_progress(lambda bar: service.remove_documents(args.corpus, args.paths, progress=bar))
    print_report(report, args.json)
    return 0 if report["complete"] else 1
