"""Ingestion throughput: `python -m bench.ingest [--json]`.

- PDF: pages/s and MB/s for the Pride and Prejudice PDF through the whole pipeline
  (loader, tokenizer, provenance), against pypdf's bare `extract_text()` loop over the same
  file in the same process; runs alternate and the best of each is kept, so a busy machine
  penalises both alike. `overhead` is ours / bare - 1 in CPU time (target: under 0.20);
  `overhead_wall` is the same in wall-clock time, noisier on a shared machine.
- Code tree: files/s and MB/s for the Python standard library on this machine.
- OCR (when the `ocr` extra is installed): pages/s of `ingest_paths(..., ocr=...)` over
  image-only copies of the PDF's first `--ocr-pages` pages (rendered at 150 dpi, grey, as a
  scanner would make them), and how much of each page's text layer OCR got back
  (`word_accuracy`: 1 - word error rate against the text layer, mean over pages).
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
import tempfile
import time
from pathlib import Path

from pypdf import PdfReader

from app.cli.commands.ingest import load_dry_run_tokenizer
from ingest.ocr import PageOcr, missing_modules
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


def scanned_copies(pdf: Path, pages: int, folder: Path, dpi: int = 150) -> list[Path]:
    """Image-only one-page PDFs of the first `pages` pages of `pdf` (no text layer)."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    copies = []
    for number in range(min(pages, len(document))):
        path = folder / f"scan-{number + 1:04d}.pdf"
        document[number].render(scale=dpi / 72, grayscale=True).to_pil().save(path, resolution=dpi)
        copies.append(path)
    document.close()
    return copies


def word_error_rate(words: list[str], reference: list[str]) -> float:
    """Word-level edit distance (substitutions, insertions, deletions) over the reference's length."""
    previous = list(range(len(reference) + 1))
    for i, word in enumerate(words, start=1):
        current = [i]
        for j, expected in enumerate(reference, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != expected)))
        previous = current
    return previous[-1] / max(len(reference), 1)


def ocr_throughput(pdf: Path, pages: int, tokenizer) -> dict:
    """OCR pages/s and text recovered, over scanned copies of the PDF's first pages."""
    missing = missing_modules()
    if missing:
        return {"skipped": f"the ocr extra is not installed ({', '.join(missing)}): make ocr"}
    engine = PageOcr()
    with tempfile.TemporaryDirectory(prefix="rmtqa-bench-ocr-") as folder:
        scans = scanned_copies(pdf, pages, Path(folder))
        with Timer() as timer:
            report, stream = ingest_paths(scans, tokenizer, ocr=engine)
        texts = {record.path: [] for record in stream.records}
        for record in stream.records:
            texts[record.path].append(tokenizer.decode(stream.tokens[record.token_start + record.header_tokens : record.token_end].tolist()))
    originals = PdfReader(pdf).pages
    accuracies = [1 - word_error_rate("".join(texts.get(str(scan), [])).split(), (originals[number].extract_text() or "").split())
                  for number, scan in enumerate(scans)]
    return {
        "engine": "rapidocr PP-OCRv6 (onnxruntime, CPU)",
        "dpi": engine.dpi,
        "pages": len(scans),
        "pages_read": sum(entry.pages or 0 for entry in report.documents),
        "seconds": round(timer.wall, 3),
        "cpu_seconds": round(timer.cpu, 3),
        "pages_per_s": round(len(scans) / timer.wall, 3),
        "word_accuracy": round(sum(accuracies) / max(len(accuracies), 1), 4),
    }


def run(pdf: Path, tree: Path, repeat: int, model: Path | None, ocr_pages: int = 0) -> dict:
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
        "ocr": ocr_throughput(pdf, ocr_pages, tokenizer) if ocr_pages > 0 else {"skipped": "--ocr-pages 0"},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--tree", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each PDF reader (best is kept)")
    parser.add_argument("--model", type=Path, help="model directory whose tokenizer to use")
    parser.add_argument("--ocr-pages", type=int, default=5, help="pages to OCR from scanned copies of the PDF (0: none)")
    args = parser.parse_args(argv)
    if not args.pdf.is_file():
        print(f"bench.ingest: no PDF at {args.pdf}", file=sys.stderr)
        return 1
    result = run(args.pdf, args.tree, max(1, args.repeat), args.model, args.ocr_pages)
    if args.json:
        print(json.dumps(result))
    else:
        pdf, tree = result["pdf"], result["code_tree"]
        print(f"tokenizer: {result['tokenizer']}")
        print(f"PDF  {pdf['pages']} pages: {pdf['pages_per_s']} pages/s, {pdf['mb_per_s']} MB/s "
              f"(bare pypdf {pdf['bare_pypdf_pages_per_s']} pages/s; overhead {pdf['overhead']:+.1%} CPU, "
              f"{pdf['overhead_wall']:+.1%} wall)")
        print(f"tree {tree['files']} files: {tree['files_per_s']} files/s, {tree['mb_per_s']} MB/s")
        ocr = result["ocr"]
        if "skipped" in ocr:
            print(f"OCR  not measured: {ocr['skipped']}")
        else:
            print(f"OCR  {ocr['pages']} scanned pages at {ocr['dpi']} dpi: {ocr['pages_per_s']} pages/s, "
                  f"word accuracy {ocr['word_accuracy']:.1%} against the text layer ({ocr['engine']})")
        print(f"peak RSS {result['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
