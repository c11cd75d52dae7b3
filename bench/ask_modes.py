"""What an ask costs in each mode, as the corpus grows: fast, reread and deep side by side.

A corpus of book text (the shared books, concatenated) with one document fact a third of the
way in is read into a corpus store with the shipped reader, at each size; then the same
question is asked in each mode (sources off, so the modes' own work is timed), `--repeats`
times, median seconds reported with whether the answer was right. The claim under test: a
re-read costs about the same at any corpus size (it scores a bounded number of memories and
re-reads ~40 windows), while a deep read grows linearly with the corpus.

    python -m bench.ask_modes [--sizes 32k,256k,1M] [--repeats 3] [--threads 1] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from model.tasks import parse_length, read_text, split_sentences

BOOKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "books"
FACT = "The access code for the storage unit is 730418."
QUESTION = "What is the access code for the storage unit?"
ANSWER = "730418"
MODES = ("fast", "reread", "deep")


def corpus_text(tokens: int, tokenizer) -> str:
    """About `tokens` tokens of book text with FACT inserted a third of the way in."""
    sentences: list[str] = []
    for book in sorted(BOOKS.glob("*.txt")):
        sentences += split_sentences(read_text(book))
    kept, count = [], 0
    for sentence in sentences:
        count += len(tokenizer.encode(" " + sentence))
        kept.append(sentence)
        if count >= tokens:
            break
    kept.insert(len(kept) // 3, FACT)
    return "\n".join(" ".join(kept[i : i + 5]) for i in range(0, len(kept), 5)) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="32k,256k,1M", help="corpus sizes in tokens (default 32k,256k,1M)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from app.service.corpus_service import CorpusService

    rows = []
    with tempfile.TemporaryDirectory() as home:
        service = CorpusService(Path(home) / "home")
        tokenizer = service.load_model().tokenizer
        for size in (parse_length(s) for s in args.sizes.split(",")):
            folder = Path(home) / f"c{size}"
            folder.mkdir()
            (folder / "books.txt").write_text(corpus_text(size, tokenizer))
            report = service.ingest([folder], f"c{size}")
            row: dict = {"tokens": report["tokens"], "read_tokens_per_s": report["tokens_per_s"]}
            for mode in MODES:
                times, answers = [], []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    result = service.ask(f"c{size}", QUESTION, mode=mode, sources=False, min_confidence=0.0)
                    times.append(time.perf_counter() - started)
                    answers.append(result.get("best_guess", result["answer"]))
                row[mode] = {"seconds": round(statistics.median(times), 3), "right": all(a == ANSWER for a in answers), "answer": answers[-1]}
            rows.append(row)
            if not args.json:
                print(f"{row['tokens']:>9,} tokens  " + "  ".join(f"{m} {row[m]['seconds']:.2f} s ({'right' if row[m]['right'] else 'wrong'})" for m in MODES))
    print(json.dumps({"bench": "ask_modes", "question": QUESTION, "threads": args.threads, "repeats": args.repeats, "sizes": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
