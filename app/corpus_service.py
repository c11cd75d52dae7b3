"""CLI glue between `rmtqa ingest --corpus` (`app.commands.ingest`) and `app.service`.

`app.commands.ingest.run` hands every non-dry run to `ingest_command(args)`. This prints a
progress bar on stderr (documents while scanning, then tokens/s and ETA while reading) and
either one JSON line (`--json`) or a readable summary on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from app.cli import UserError


def configure_threads() -> None:
    """`RMTQA_THREADS=N` sets torch's intra-op threads (useful next to other CPU jobs)."""
    value = os.environ.get("RMTQA_THREADS")
    if value:
        import torch

        torch.set_num_threads(max(1, int(value)))


class ProgressBar:
    """tqdm bars on stderr (hidden when stderr is not a terminal) fed by service events."""

    def __init__(self) -> None:
        self.scan = None
        self.read = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        if event["phase"] == "scan":
            if self.scan is None:
                self.scan = tqdm(unit=" files", file=sys.stderr, disable=None, dynamic_ncols=True, leave=False, desc="scanning")
            self.scan.update(event["files"] - self.scan.n)  # files, not the pages of one PDF
            pages = f"{event['pages']:,} pages, " if event["pages"] else ""
            self.scan.set_postfix_str(f"{pages}{event['tokens']:,} tokens | {event['path']}", refresh=False)
        elif event["phase"] == "read":
            if self.read is None:
                self.close_scan()
                self.read = tqdm(total=event["tokens_to_read"], unit="tok", unit_scale=True, file=sys.stderr, disable=None,
                                 dynamic_ncols=True, leave=False, desc="reading")
            self.read.update(event["tokens_read"] - self.read.n)
            self.read.set_postfix_str(f"segment {event['segments_done']:,}/{event['segments_total']:,}", refresh=False)

    def close_scan(self) -> None:
        if self.scan is not None:
            self.scan.close()
            self.scan = None

    def close(self) -> None:
        self.close_scan()
        if self.read is not None:
            self.read.close()
            self.read = None


def run_with_progress(action: Callable[[ProgressBar], dict]) -> dict:
    bar = ProgressBar()
    try:
        return action(bar)
    finally:
        bar.close()


def ingest_command(args: argparse.Namespace) -> int:
    from app.service import CorpusService

    if not args.corpus:
        raise UserError("give --corpus NAME to read into a corpus (or --dry-run to only check the files)")
    configure_threads()
    service = CorpusService(model_dir=args.model)
    report = run_with_progress(lambda bar: service.ingest(args.paths, args.corpus, progress=bar))
    print_report(report, args.json)
    return 0 if report["complete"] else 1


def print_report(report: dict, as_json: bool) -> None:
    if report.get("rebuilt"):
        print(f"rmtqa: note: corpus {report['corpus']} was rebuilt from scratch: {report['rebuilt']}", file=sys.stderr)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    from app.commands.ingest import summary
    from ingest.report import FileEntry, IngestReport, Skipped

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
