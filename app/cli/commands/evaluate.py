"""`rmtqa eval`: BABILong-style accuracy of a model by context length, with baselines.

    rmtqa eval --babi FILE --noise DIR --lengths 1k,4k,32k,128k,1M --samples N
               [--task qa1] [--model DIR] [--split val|all] [--seed S] [--heatmap PNG] [--json]
    rmtqa eval --task needle --noise DIR --lengths 32k --samples N [--json]
    rmtqa eval --babi FILE --noise DIR --direct --samples N      # the ladder's R0
    rmtqa eval ... --mode reread   # the model answers by re-reading its places with the question (baselines unchanged)
    rmtqa eval --task code --repo DIR --samples N [--max-tokens 1M] [--json]

The questions come from a bAbI-format file (with `--split val`, only the stories training held
out: the same split, fraction and seed as `rmtqa train`), or, with `--task needle`, from the
document-fact generator (a fact such as "The warranty period is 90 days." among 0-2
distractor facts; the seed picks them, training uses other seeds); the padding from the .txt
files of a folder. For the shipped model on the shared books pass `--noise-include
frankenstein`, the book training never read. `--lengths 0` puts only the facts in the context
(read into memory); `--direct` puts them in the answering segment itself, before the question
(no memory, no baselines). With `--task code`, questions about the Python code of DIR
(`model.code_facts`: where X is defined, which class defines method Y, parameters, defaults,
which file imports Z) are asked over the whole of DIR read as one context, in the order
`rmtqa ingest` reads it (`model.code_samples`), cut at --max-tokens. The last line printed is
always one JSON object.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.cli.errors import UserError
from app.paths import default_model_dir

AUTOCAST = {"bf16": "bfloat16"}
NEEDLE_SEED = 1_000_003


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="accuracy by context length and fact depth, with last-segment and BM25 baselines",
        description="Answer bAbI questions hidden in long book text; report exact match by length and depth.",
    )
    parser.add_argument("--babi", type=Path, metavar="FILE", help="a bAbI-format file (stories restart at id 1); not with --task needle")
    parser.add_argument("--noise", type=Path, metavar="DIR", help="a folder of .txt files to pad contexts with (not with --task code)")
    parser.add_argument("--repo", type=Path, metavar="DIR", help="--task code: the repository (folder) to ask about, read as one context")
    parser.add_argument("--max-tokens", default="1M", metavar="N",
                        help="--task code: read at most the first N tokens of the repository, asking only about them (default 1M)")
    parser.add_argument("--noise-include", type=_names, metavar="NAMES", help="only these documents of DIR (comma-separated, e.g. frankenstein)")
    parser.add_argument("--noise-exclude", type=_names, default=[], metavar="NAMES", help="documents of DIR to leave out (comma-separated)")
    parser.add_argument("--lengths", type=_names, metavar="LIST", help="context lengths in tokens, e.g. 1k,4k,32k,128k,1M (0: the facts only)")
    parser.add_argument("--mode", choices=["fast", "reread", "deep"], default="fast",
                        help="how the model answers: fast (from the final memory, default), reread (re-read the places the memory points at, with the question) "
                             "or deep (read the whole context again with the question, keeping a running answer)")
    parser.add_argument("--direct", action="store_true", help="facts and question together in the answering segment: binding without memory (R0)")
    parser.add_argument("--samples", type=int, default=20, metavar="N", help="samples per length (default 20)")
    parser.add_argument("--task", help="bAbI task of FILE (default: from its name, e.g. qa1_...), needle (document facts, no FILE) "
                                       "or code (facts of the Python code in --repo)")
    parser.add_argument("--model", type=Path, metavar="DIR", help=f"model directory (default: {default_model_dir()})")
    parser.add_argument("--split", choices=["val", "all"], default="val", help="val: only the stories training held out (default); all: every story")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="held-out fraction of stories, as in training (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--depth-buckets", type=int, default=5, metavar="K", help="depth buckets; 1 draws depths as they come (default 5)")
    parser.add_argument("--batch-size", type=int, default=25,
                        help="contexts read together (default 25; --task code asks every question in one batch, reading the repository once)")
    parser.add_argument(
        "--autocast", choices=sorted(AUTOCAST),
        help="read contexts under autocast: faster only with native bf16 matmuls (GPUs, CPUs with AMX/AVX512-BF16), far slower without",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (1 is fastest on a machine busy with other work)")
    parser.add_argument("--heatmap", type=Path, metavar="PNG", help="write a depth x length accuracy heatmap")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from model.babi import parse_babi
    from model.evaluate import evaluate
    from model.tasks import NoiseSource, TaskGenerator, direct_sample, parse_length

    if min(args.samples, args.depth_buckets, args.batch_size, args.threads or 1) < 1:
        raise UserError("--samples, --depth-buckets, --batch-size and --threads must be at least 1")
    if args.task == "code":
        return run_code(args)
    if args.repo is not None:
        raise UserError("--repo is for --task code")
    if args.noise is None:
        raise UserError("give --noise DIR (a folder of .txt files to pad contexts with)")
    if args.direct and args.mode != "fast":
        raise UserError("--direct puts the facts beside the question: there is nothing to re-read (leave out --mode)")
    if args.direct == bool(args.lengths):
        raise UserError("give --lengths (facts in context) or --direct (facts in the question), not both or neither")
    try:
        lengths = [parse_length(length) for length in args.lengths or ["0"]]
    except ValueError as error:
        raise UserError(str(error)) from error
    needle = args.task == "needle"
    if needle and args.babi:
        raise UserError("--task needle generates its facts: leave out --babi")
    if not needle and args.babi is None:
        raise UserError("give --babi FILE (a bAbI-format file), or --task needle")
    if not needle and not args.babi.is_file():
        raise UserError(f"no bAbI file at {args.babi}")
    if not args.noise.is_dir():
        raise UserError(f"no folder of .txt files at {args.noise}")
    model, tokenizer, model_dir, device = load_reader(args)
    try:
        noise = NoiseSource.from_directory(args.noise, include=args.noise_include, exclude=args.noise_exclude)
    except ValueError as error:
        raise UserError(f"--noise {args.noise}: {error}") from error
    if needle:
        task, split = "needle", None
        # Training draws needles from seeds 0 and up; evaluation from a seed far from them.
        generator = TaskGenerator(tokenizer, ["needle"], noise=noise, seed=NEEDLE_SEED + args.seed, needle_probability=1.0)
    else:
        try:
            stories = parse_babi(args.babi, args.task)
        except ValueError as error:
            raise UserError(str(error).replace("pass task=", "pass --task")) from error
        task, split = (stories[0].task if stories else args.task), args.split
        generator = TaskGenerator(
            tokenizer, [task], babi_files={task: stories}, noise=noise, seed=args.seed,
            split="val" if split == "val" else None, val_fraction=args.val_fraction,
        )
    autocast = autocast_dtype(args)
    if args.direct:
        source = [direct_sample(generator.sample(0)) for _ in range(args.samples)]
        report = evaluate(model, tokenizer, source, depth_buckets=1, baselines=(), batch_size=args.batch_size, autocast_dtype=autocast)
    else:
        report = evaluate(
            model, tokenizer, generator, lengths, args.samples, depth_buckets=args.depth_buckets,
            batch_size=args.batch_size, autocast_dtype=autocast, progress=True, mode=args.mode, **judging(model_dir),
        )
    report = {
        "task": report.pop("task"), "model": str(model_dir), "split": split, "seed": args.seed, "direct": args.direct,
        "noise": sorted(noise.documents), "autocast": args.autocast, "device": device, **report,
    }
    return finish(report, args, title=f"{task} on {model_dir.name}: exact match")


def run_code(args: argparse.Namespace) -> int:
    """`--task code`: questions about the Python code of --repo over the whole repository."""
    from model.backbones import deep_reader_dir, load_rmt
    from model.code_samples import repository_questions
    from model.evaluate import evaluate
    from model.tasks import parse_length

    mixed = [name for name, value in (("--babi", args.babi), ("--noise", args.noise), ("--lengths", args.lengths), ("--direct", args.direct)) if value]
    if mixed:
        raise UserError(f"--task code asks about --repo: leave out {', '.join(mixed)}")
    if args.repo is None or not args.repo.is_dir():
        raise UserError(f"--task code needs --repo DIR, a folder of Python code{f' (no folder at {args.repo})' if args.repo else ''}")
    try:
        max_tokens = parse_length(args.max_tokens)
    except ValueError as error:
        raise UserError(f"--max-tokens: {error}") from error
    if max_tokens < 1:
        raise UserError("--max-tokens must be at least 1")
    model, tokenizer, model_dir, device = load_reader(args)
    deep = deep_reader_dir(model_dir) if args.mode == "deep" else None  # code questions are read deep by it (model.deep.reader_for)
    questions = repository_questions(args.repo, tokenizer, args.samples, args.seed, max_tokens)
    if not questions.samples:
        raise UserError(f"no questions to ask about {args.repo}: no unambiguous facts in its Python files (parsed {questions.parsed})")
    report = evaluate(
        model, tokenizer, questions.samples, depth_buckets=args.depth_buckets, batch_size=len(questions.samples),
        autocast_dtype=autocast_dtype(args), progress=True, mode=args.mode, **judging(model_dir),
        deep_reader=load_rmt(deep, device=device) if deep is not None else None, heading=questions.headings,
    )
    report = {
        "task": report.pop("task"), "model": str(model_dir), "deep_reader": str(deep) if deep else None, "repo": str(args.repo), "seed": args.seed, "max_tokens": max_tokens,
        **questions.to_dict(), "autocast": args.autocast, "device": device, **report,
    }
    return finish(report, args, title=f"code facts of {args.repo.resolve().name} on {model_dir.name}: exact match")


def judging(model_dir: Path) -> dict:
    """The reader's confidence calibration and trained question types, when it has them: the
    report then says how often it would abstain, as `rmtqa ask` does."""
    from model.confidence import Calibration
    from model.question_types import trained_types

    return {"calibration": Calibration.load(model_dir), "trained": trained_types(model_dir) or ()}


def load_reader(args: argparse.Namespace):
    """(model, tokenizer, model directory, device) as --model, --device and --threads say."""
    import torch

    from model.backbones import load_rmt
    from model.tokenizer import load_tokenizer

    model_dir = args.model or default_model_dir()
    if not (model_dir / "config.json").is_file():
        raise UserError(f"no model at {model_dir}: train one with `rmtqa train` or pass --model")
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    return load_rmt(model_dir, device=device), load_tokenizer(model_dir), model_dir, device


def autocast_dtype(args: argparse.Namespace):
    import torch

    return getattr(torch, AUTOCAST[args.autocast]) if args.autocast else None


def finish(report: dict, args: argparse.Namespace, title: str) -> int:
    """The heatmap if asked for, the table for people (unless --json), then the report as one
    JSON line."""
    from model.evaluate import plot_heatmap

    if args.heatmap:
        plot_heatmap(report, args.heatmap, title=title)
        report["heatmap"] = str(args.heatmap)
    if not args.json:
        print(table(report))
    print(json.dumps(report))
    return 0


def table(report: dict) -> str:
    """Accuracy per length for people: the model, each baseline, n and reading speed (and,
    for document facts, the model's accuracy per kind of fact)."""
    from model.evaluate import format_length

    names = list(report["baselines"])
    header = f"{'length':>8} {'rmt':>6} " + " ".join(f"{name:>12}" for name in names) + f" {'n':>5} {'tok/s':>8}"
    lines = [header]
    for i, result in enumerate(report["results"]):
        cells = [result["accuracy"]] + [report["baselines"][name][i]["accuracy"] for name in names]
        shown = [f"{c:.3f}" if c is not None else "-" for c in cells]
        lines.append(
            f"{format_length(result['length']):>8} {shown[0]:>6} " + " ".join(f"{s:>12}" for s in shown[1:])
            + f" {result['n']:>5} {result['tokens_per_s'] or '-':>8}"
        )
    for result in report["results"]:
        if "abstained" in result:  # the reader's calibrated confidence: how often it would say "not found"
            answered = result["accuracy_when_answered"]
            lines.append(f"{format_length(result['length'])} abstained {result['abstained']:.2f}, accuracy when answered "
                         + (f"{answered:.3f}" if answered is not None else "-"))
        if "by_kind" in result:  # document facts: which kinds the reader keeps
            kinds = ", ".join(f"{cell['kind']} {cell['accuracy']:.2f} (n={cell['n']})" for cell in result["by_kind"])
            lines.append(f"{format_length(result['length'])} by kind: {kinds}")
    return "\n".join(lines)
