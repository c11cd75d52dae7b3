"""Where a reader loses document facts: teacher-forced accuracy of each answer token, by needle kind.

Exact match says an access code was wrong; this says which of its digits, and whether a wrong
digit is one from elsewhere in the code (order lost) or one the code does not contain (identity
lost). Needles as `rmtqa eval --task needle` draws them, hidden in Frankenstein (held out of
training); `LENGTH` 0 means the facts alone.

    python scripts/answer_token_accuracy.py MODEL_DIR [LENGTH] [SAMPLES] [BATCH]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.babi import needle_kind  # noqa: E402
from model.backbones import load_rmt  # noqa: E402
from model.rmt import IGNORE_INDEX  # noqa: E402
from model.tasks import NoiseSource, TaskGenerator  # noqa: E402
from model.tokenizer import load_tokenizer  # noqa: E402
from model.train import collate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("length", nargs="?", default="0", help="context tokens, e.g. 0 (facts only), 4k")
    parser.add_argument("samples", nargs="?", type=int, default=256)
    parser.add_argument("batch", nargs="?", type=int, default=32)
    parser.add_argument("--books", default="../shared/data/books")
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_rmt(args.model)
    tokenizer = load_tokenizer(args.model)
    noise = NoiseSource.from_directory(Path(args.books), include=["frankenstein"])
    needles = TaskGenerator(tokenizer, ["qa1"], noise=noise, seed=args.seed, needle_probability=1.0)
    by_position: dict[str, defaultdict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
    wrong_digits: Counter[str] = Counter()
    with torch.no_grad():
        for start in range(0, args.samples, args.batch):
            samples = [needles.sample(args.length) for _ in range(min(args.batch, args.samples - start))]
            batch = collate(samples, torch.device("cpu"))
            predicted = iter(model(**batch).logits.argmax(-1).tolist())  # one row per labelled token, in order
            for sample, labels in zip(samples, batch["labels"]):
                kind = needle_kind(sample.question)
                answer = [token for token in labels.tolist() if token != IGNORE_INDEX]
                for position, token in enumerate(answer):
                    guess = next(predicted)
                    by_position[kind][position].append(guess == token)
                    if guess != token and tokenizer.decode([token]).isdigit() and tokenizer.decode([guess]).isdigit():
                        wrong_digits["elsewhere in the answer" if guess in answer else "not in the answer"] += 1
    report = {
        "model": args.model, "length": args.length, "samples": args.samples,
        "by_kind": {kind: [{"position": p, "accuracy": sum(hits) / len(hits), "n": len(hits)} for p, hits in sorted(positions.items())]
                    for kind, positions in sorted(by_position.items())},
        "wrong_digits": dict(wrong_digits),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
