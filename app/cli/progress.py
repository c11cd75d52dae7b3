"""Progress on stderr for the commands that read into a corpus (`ingest`, `rm NAME PATH...`):
documents while scanning, then tokens/s and ETA while reading, fed by the service's events."""
from __future__ import annotations

import sys
from typing import Callable


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
