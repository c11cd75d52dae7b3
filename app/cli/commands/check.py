"""`rmtqa check NAME [--json]`: verify a corpus end to end.

Every file against the checksum its manifest records, the segment hash chain against the
saved tokens, and the final memory against `memory_sha256` (see `Corpus.verify`). Exit 0
when intact; exit 1 with one line saying what is damaged and how to repair it.
"""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="verify a corpus end to end",
                                   description="Verify every file of a corpus against its checksum, its segment hashes and its final memory.")
    parser.add_argument("corpus", metavar="NAME")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (also when damaged)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.corpus.errors import CorpusDamaged
    from app.corpus.store import CorpusStore
    from app.paths import rmtqa_home

    try:
        result = CorpusStore(rmtqa_home()).check(args.corpus)
    except CorpusDamaged as error:
        if not args.json:
            raise  # the CLI prints it as one line, exit 1
        print(json.dumps({"corpus": args.corpus, "intact": False, "problem": error.problem, "message": str(error)}, ensure_ascii=False))
        return 1
    if args.json:
        print(json.dumps({**result, "intact": True}, ensure_ascii=False))
    else:
        state = "complete" if result["complete"] else f"incomplete: {result['segments_saved']:,}/{result['segments']:,} segments saved"
        print(f"Corpus {result['corpus']} is intact: {result['files']:,} files, {result['bytes'] / 1e6:,.1f} MB checked ({state}).")
    return 0
