"""Ingestion throughput: `python -m bench.ingest [--json]`.

- PDF: pages/s and MB/s for the Pride and Prejudice PDF through the whole pipeline
  (loader, tokenizer, provenance), against pypdf's bare `extract_text()` loop over the same
  file in the same process; runs alternate and the best of each is kept, so a busy machine
  penalises both alike. `overhead` is ours / bare - 1 in CPU time (target: under 0.20);
  `overhead_wall` is the same in wall-clock time, noisier on a shared machine.
- Code tree: files/s and MB/s for the Python standard library on this machine.
- Peak RSS of the process.
The tokenizer is the shipped model's when there is one, else UTF-8 bytes (named in output).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import sysconfig
import time
from pathlib import Path

from pypdf import PdfReader

from app.cli.commands.ingest import load_dry_run_tokenizer
from ingest.pipeline import ingest_paths
from ingest.tokenizers import tokenizer_name

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PDF = REPO.parent / "shared" / "data" / "books" / "pride-and-prejudice.pdf"


class Timer:
    """Wall-clock and CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bare_pypdf(path: Path) -> tuple[Timer, int]:
    """Time and pages for pypdf alone: open, then extract_text() on every page."""
    with Timer() as timer, open(path, "rb") as handle:
        pages = sum(1 for page in PdfReader(handle).pages if page.extract_text() is not None)
    return timer, pages


def pipeline(paths: list[Path], tokenizer) -> tuple[Timer, dict]:
    with Timer() as timer:
        report, stream = ingest_paths(paths, tokenizer)
    # Bytes on disk of the files read (members of archives inside the tree are not counted).
    size = sum(os.path.getsize(entry.path) for entry in report.documents if os.path.isfile(entry.path))
    return timer, {
        "files": len(report.documents),
        "pages": sum(entry.pages or 0 for entry in report.documents),
        "tokens": len(stream),
        "bytes": size,
        "skipped": len(report.skipped),
    }


def run(pdf: Path, tree: Path, repeat: int, model: Path | None) -> dict:
    tokenizer, _ = load_dry_run_tokenizer(model)
    bare_runs, our_runs = [], []
    for _ in range(repeat):  # alternate, so load from other processes hits both
        timer, pages = bare_pypdf(pdf)
        bare_runs.append(timer)
        timer, ours = pipeline([pdf], tokenizer)
        our_runs.append(timer)
    best_wall, bare_wall = min(t.wall for t in our_runs), min(t.wall for t in bare_runs)
    best_cpu, bare_cpu = min(t.cpu for t in our_runs), min(t.cpu for t in bare_runs)
    megabytes = pdf.stat().st_size / 1e6
    tree_timer, tree_stats = pipeline([tree], tokenizer)
    return {
        "tokenizer": tokenizer_name(tokenizer),
        "repeat": repeat,
        "pdf": {
            "path": str(pdf),
            "pages": ours["pages"],
            "tokens": ours["tokens"],
            "seconds": round(best_wall, 3),
            "cpu_seconds": round(best_cpu, 3),
            "pages_per_s": round(ours["pages"] / best_wall, 2),
            "mb_per_s": round(megabytes / best_wall, 3),
            "bare_pypdf_seconds": round(bare_wall, 3),
            "bare_pypdf_cpu_seconds": round(bare_cpu, 3),
            "bare_pypdf_pages_per_s": round(pages / bare_wall, 2),
            "overhead": round(best_cpu / bare_cpu - 1, 4),
            "overhead_wall": round(best_wall / bare_wall - 1, 4),
            "runs_wall_seconds": {"ours": [round(t.wall, 2) for t in our_runs], "bare": [round(t.wall, 2) for t in bare_runs]},
        },
        "code_tree": {
            "path": str(tree),
            "files": tree_stats["files"],
            "skipped": tree_stats["skipped"],
            "tokens": tree_stats["tokens"],
            "seconds": round(tree_timer.wall, 3),
            "cpu_seconds": round(tree_timer.cpu, 3),
            "files_per_s": round(tree_stats["files"] / tree_timer.wall, 1),
            "mb_per_s": round(tree_stats["bytes"] / 1e6 / tree_timer.wall, 3),
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--tree", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each PDF reader (best is kept)")
    parser.add_argument("--model", type=Path, help="model directory whose tokenizer to use")
    args = parser.parse_args(argv)
    if not args.pdf.is_file():
        print(f"bench.ingest: no PDF at {args.pdf}", file=sys.stderr)
        return 1
    result = run(args.pdf, args.tree, max(1, args.repeat), args.model)
    if args.json:
        print(json.dumps(result))
    else:
        pdf, tree = result["pdf"], result["code_tree"]
        print(f"tokenizer: {result['tokenizer']}")
        print(f"PDF  {pdf['pages']} pages: {pdf['pages_per_s']} pages/s, {pdf['mb_per_s']} MB/s "
              f"(bare pypdf {pdf['bare_pypdf_pages_per_s']} pages/s; overhead {pdf['overhead']:+.1%} CPU, "
              f"{pdf['overhead_wall']:+.1%} wall)")
        print(f"tree {tree['files']} files: {tree['files_per_s']} files/s, {tree['mb_per_s']} MB/s")
        print(f"peak RSS {result['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
