"""Fit a reader's answer confidence (model/confidence.py) and check it on other text and questions.

    python scripts/calibrate_confidence.py MODEL_DIR --books DIR [--fit-book dracula] [--check-book frankenstein]
                                           [--samples N] [--threshold 0.5] [--write] [--json]

Questions come in five groups, each answered in both modes (fast, reread):

* `needle`, `qa1`: trained question types about facts the context holds (should be answered);
* `absent`: trained question types about a fact the context does not hold -- a document-fact
  question about another key, "Where is NAME?" for a name the story never mentions (should
  abstain: any answer is wrong);
* `open`: plain questions a user asks of a book or a contract, words from the book itself
  ("Who wrote the letter?", "Why did the captain leave the ship?") (should abstain);
* `untrained`: bAbI tasks 2-5, question forms the reader was never trained on.

The fit uses one book and generator seeds of its own; the check another book (by default the
one training never read) and other seeds, so the check's numbers are on questions and text the
calibration never saw. `--write` saves the fit beside the model (`confidence.json`) with its
report. The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.babi import ACTORS, MORE_ACTORS, generate_needle, needle_questions  # noqa: E402
from model.backbones import load_rmt  # noqa: E402
from model.confidence import FEATURES, Calibration, coverage_curve, fast_features, fit_logistic, reliability, reread_features  # noqa: E402
from model.evaluate import exact_match, read_batch, reread_sample  # noqa: E402
from model.question_types import question_type, trained_types  # noqa: E402
from model.tasks import QUESTION_TEMPLATE, NoiseSource, TaskGenerator, TaskSample  # noqa: E402
from model.tokenizer import load_tokenizer  # noqa: E402

GROUPS = ("needle", "qa1", "absent", "open", "untrained")
SHOULD_ANSWER = ("needle", "qa1")
OPEN_FORMS = ("Who {verb} the {noun}?", "Why did the {noun} {verb} the {other}?", "How many {noun}s were there?",
              "What did the {noun} say about the {other}?", "Which {noun} was {adjective}?", "When did the {noun} {verb}?",
              "What happened to the {noun}?", "Who wrote the {noun}?", "Does the {noun} mention the {other}?",
              "What is the {noun} of the {other}?", "Where did the {noun} go after the {other}?", "Who raised the {noun}?")
VERBS = ("left", "found", "signed", "opened", "sold", "built", "answered", "followed", "visited", "described")
ADJECTIVES = ("first", "largest", "oldest", "missing", "last", "cheapest")


def open_question(rng: np.random.Generator, words: list[str]) -> str:
    form = OPEN_FORMS[int(rng.integers(len(OPEN_FORMS)))]
    return form.format(verb=VERBS[int(rng.integers(len(VERBS)))], adjective=ADJECTIVES[int(rng.integers(len(ADJECTIVES)))],
                       noun=words[int(rng.integers(len(words)))], other=words[int(rng.integers(len(words)))])


def with_question(sample: TaskSample, question: str, tokenizer) -> TaskSample:
    return replace(sample, question=question, answer="", question_ids=tokenizer.encode(QUESTION_TEMPLATE.format(question=question)))


def build(group: str, tokenizer, noise: NoiseSource, seed: int, length: int, n: int) -> list[TaskSample]:
    """`n` questions of one group over contexts of `length` tokens."""
    rng = np.random.default_rng(seed)
    if group in ("needle", "qa1"):
        generator = TaskGenerator(tokenizer, [group], noise=noise, seed=seed, needle_probability=float(group == "needle"))
        return [generator.sample(length) for _ in range(n)]
    if group == "untrained":
        generator = TaskGenerator(tokenizer, ["qa2", "qa3", "qa4", "qa5"], noise=noise, seed=seed)
        return [generator.sample(length) for _ in range(n)]
    if group == "open":
        words = sorted({w.lower() for s in noise.sentences[:4000] for w in s.split() if w.isalpha() and len(w) > 4})
        generator = TaskGenerator(tokenizer, ["needle"], noise=noise, seed=seed, needle_probability=1.0)
        return [with_question(generator.sample(length), open_question(rng, words), tokenizer) for _ in range(n)]
    out = []  # absent: half document facts about another key, half "Where is NAME?" for a name not in the story
    facts = TaskGenerator(tokenizer, ["needle"], noise=noise, seed=seed, needle_probability=1.0)
    story = TaskGenerator(tokenizer, ["qa1"], noise=noise, seed=seed + 1)
    for i in range(n):
        if i % 2 == 0:
            sample = facts.sample(length)
            stated = {q for q, _ in needle_questions(sample.facts)}
            question = next(q for q in (generate_needle(rng).question for _ in range(100)) if q not in stated)
        else:
            sample = story.sample(length)
            named = " ".join(sample.facts)
            question = "Where is " + next(a for a in (list(MORE_ACTORS + ACTORS)[int(rng.integers(len(MORE_ACTORS + ACTORS)))] for _ in range(100)) if a not in named) + "?"
        out.append(with_question(sample, question, tokenizer))
    return out


def answer_all(model, tokenizer, samples: list[TaskSample], trained: list[str]) -> list[dict]:
    """Both modes' answers, features and correctness for each sample (read 10 at a time)."""
    rows = []
    for b in range(0, len(samples), 10):
        batch = samples[b : b + 10]
        every: list[torch.Tensor] = []
        read_batch(model, [s.context_ids for s in batch], every_segment=every)
        for i, sample in enumerate(batch):
            result = reread_sample(model, tokenizer, sample, i, every)
            typed = question_type(sample.question) in trained
            gold = sample.answer
            rows.append({
                "question": sample.question, "answer": gold,
                "fast": {"text": result.fast_text, "correct": bool(gold) and exact_match(result.fast_text, gold),
                         "features": fast_features(typed, result.fast_logprob)},
                "reread": {"text": result.text, "correct": bool(gold) and exact_match(result.text, gold),
                           "features": reread_features(typed, result)},
            })
    return rows


def collect(model, tokenizer, noise: NoiseSource, seed: int, samples: int, trained: list[str]) -> dict[str, list[dict]]:
    lengths = {"needle": (4000, 32000), "qa1": (4000, 32000), "absent": (4000, 32000), "open": (4000,), "untrained": (4000,)}
    out = {}
    for g, group in enumerate(GROUPS):
        rows = []
        for j, length in enumerate(lengths[group]):
            count = samples if length <= 4000 else max(samples // 2, 1)
            for row in answer_all(model, tokenizer, build(group, tokenizer, noise, seed + 101 * g + 7 * j, length, count), trained):
                rows.append({**row, "length": length})
        out[group] = rows
        print(f"{group}: {len(rows)} questions", file=sys.stderr)
    return out


def summary(data: dict[str, list[dict]], calibration: Calibration) -> dict:
    """Per mode: per group n, accuracy, abstained, accuracy when answered; the reliability table
    and accuracy-vs-coverage over all groups."""
    report = {}
    for mode in FEATURES:
        groups, every_conf, every_ok = {}, [], []
        for group, rows in data.items():
            conf = [calibration.confidence(mode, row[mode]["features"]) for row in rows]
            ok = [row[mode]["correct"] for row in rows]
            answered = [o for c, o in zip(conf, ok) if c >= calibration.threshold]
            correct_conf = [c for c, o in zip(conf, ok) if o]
            groups[group] = {"n": len(rows), "accuracy": round(sum(ok) / len(ok), 3), "abstained": round(1 - len(answered) / len(ok), 3),
                             "accuracy_when_answered": round(sum(answered) / len(answered), 3) if answered else None,
                             "correct_abstained": round(sum(c < calibration.threshold for c in correct_conf) / len(correct_conf), 3) if correct_conf else None}
            every_conf += conf
            every_ok += ok
        report[mode] = {"groups": groups, "reliability": reliability(every_conf, every_ok), "coverage": coverage_curve(every_conf, every_ok)}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--books", type=Path, required=True)
    parser.add_argument("--fit-book", default="dracula")
    parser.add_argument("--check-book", default="frankenstein")
    parser.add_argument("--samples", type=int, default=40, help="questions per group at 4k (half as many at 32k)")
    parser.add_argument("--threshold", type=float, default=0.5, help="abstain below this confidence (default: even odds)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="save the fit as MODEL/confidence.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_rmt(args.model), load_tokenizer(args.model)
    trained = trained_types(args.model) or []
    fit_data = collect(model, tokenizer, NoiseSource.from_directory(args.books, include=[args.fit_book]), 20_000, args.samples, trained)
    models = {}
    for mode, names in FEATURES.items():
        rows = [row for group in fit_data.values() for row in group]
        models[mode] = fit_logistic([row[mode]["features"] for row in rows], [row[mode]["correct"] for row in rows], names)
    calibration = Calibration(models, args.threshold)
    check_data = collect(model, tokenizer, NoiseSource.from_directory(args.books, include=[args.check_book]), 30_000, args.samples, trained)
    report = {"model": str(args.model), "trained_types": trained, "threshold": args.threshold, "fit_book": args.fit_book,
              "check_book": args.check_book, "samples": args.samples, "models": models,
              "fit": summary(fit_data, calibration), "check": summary(check_data, calibration)}
    if args.write:
        Calibration(models, args.threshold, {k: report[k] for k in ("fit_book", "check_book", "samples", "check")}).save(args.model)
    if not args.json:
        for mode in FEATURES:
            for group, cell in report["check"][mode]["groups"].items():
                print(f"check {mode:6} {group:9} n={cell['n']:3} accuracy {cell['accuracy']:.2f} abstained {cell['abstained']:.2f} "
                      f"accuracy when answered {cell['accuracy_when_answered']} correct abstained {cell['correct_abstained']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
