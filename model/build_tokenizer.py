"""Train the shipped SentencePiece tokenizer: `python -m model.build_tokenizer --out assets/default`.

Training text: bAbI stories (so every bAbI word is one token), public-domain books (the noise
the reader learns to ignore, and the prose users upload), and Python sources from the standard
library (code corpora). Byte fallback keeps any other text encodable.
"""
from __future__ import annotations

import argparse
import random
import sysconfig
from pathlib import Path
from typing import Iterator

from model.tokenizer import train_sentencepiece

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _decode(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def training_lines(shared: Path, seed: int = 0) -> Iterator[str]:
    rng = random.Random(seed)
    for path in sorted((shared / "babi").glob("qa*_train.txt")):
        lines = path.read_text().splitlines()[:40000]
        for line in lines:
            yield line.split(" ", 1)[-1].replace("\t", " ")
    for path in sorted((shared / "books").glob("*.txt")):
        for line in _decode(path.read_bytes()).replace("\r\n", "\n").split("\n"):
            if line.strip():
                yield line
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(stdlib.glob("*.py"))
    rng.shuffle(sources)
    for path in sources[:150]:
        yield from _decode(path.read_bytes()).split("\n")
    # The answer format the tasks use.
    for _ in range(2000):
        yield "Question: Where is Mary?\nAnswer: kitchen"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="assets/default")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--shared", default=str(SHARED))
    args = parser.parse_args()
    tokenizer = train_sentencepiece(training_lines(Path(args.shared)), args.out, vocab_size=args.vocab_size)
    sample = "Mary moved to the bathroom. Where is Mary?\nAnswer: bathroom"
    print(tokenizer.vocab_size, [tokenizer.sp.id_to_piece(i) for i in tokenizer.encode(sample)])


if __name__ == "__main__":
    main()
