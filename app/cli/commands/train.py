"""`rmtqa train CONFIG [--output DIR] [--max-steps N] [--max-minutes M] [--device cpu|cuda]`
and `rmtqa train-deep [CONFIG] [--output DIR] [--max-steps N] [--max-minutes M]`.

A thin layer over `model.train.Trainer`: the JSON config with the command line's overrides
on top, a progress bar on stderr, and the final summary as one JSON line on stdout. Running
it again with the same output resumes from `OUTPUT/checkpoint`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from app.cli.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an RMT reader with the length curriculum (resumes automatically)",
        description="Train an RMT reader from a JSON config; resumes from OUTPUT/checkpoint when present.",
    )
    parser.add_argument("config", type=Path, metavar="CONFIG", help="training settings (JSON), e.g. configs/default.json")
    parser.add_argument("--output", type=Path, metavar="DIR", help="where checkpoints, log.jsonl and final/ go (overrides the config)")
    parser.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps in all (overrides the config)")
    parser.add_argument("--max-minutes", type=float, metavar="M", help="stop this run after M minutes (overrides the config)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: the config's (auto: cuda when available)")
    parser.set_defaults(func=run)
    deep = subparsers.add_parser(
        "train-deep",
        help="train the reader deep reads use (a window with its heading beside the question; code facts, qa1, needles)",
        description="Train a deep reader (model/deep_training.py) from a model directory; the best validated weights go to OUTPUT/best, "
                    "which a model directory ships as deep/.",
    )
    deep.add_argument("config", type=Path, nargs="?", metavar="CONFIG", help="settings (JSON, model.deep_training.DeepTrainConfig fields), e.g. configs/deep_code.json")
    deep.add_argument("--output", type=Path, metavar="DIR", help="where best/ and deep_train_config.json go (overrides the config)")
    deep.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (overrides the config)")
    deep.add_argument("--max-minutes", type=float, metavar="M", help="stop after M minutes (overrides the config)")
    deep.set_defaults(func=run_deep)


def run_deep(args: argparse.Namespace) -> int:
    from model.deep_training import DeepTrainConfig, train_deep

    settings = {}
    if args.config is not None:
        if not args.config.is_file():
            raise UserError(f"no training config at {args.config}")
        try:
            settings = json.loads(args.config.read_text())
        except ValueError as error:
            raise UserError(f"{args.config} is not JSON: {error}") from error
        unknown = set(settings) - set(DeepTrainConfig.__dataclass_fields__)
        if unknown:
            raise UserError(f"unknown settings in {args.config}: {', '.join(sorted(unknown))}")
    overrides = {"output": str(args.output.resolve()) if args.output else None, "max_steps": args.max_steps, "max_minutes": args.max_minutes}
    config = DeepTrainConfig(**{**settings, **{k: v for k, v in overrides.items() if v is not None}})
    best = train_deep(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps({"best": str(best), **json.loads((best / "validation.json").read_text())}))
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from model.train import Trainer, TrainConfig

    if not args.config.is_file():
        raise UserError(f"no training config at {args.config}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    overrides = {
        # The trainer resolves relative paths against the repository; the command line's
        # are relative to where the user is.
        "output": str(args.output.resolve()) if args.output else None,
        "max_steps": args.max_steps,
        "max_minutes": args.max_minutes,
        "device": args.device,
    }
    config = dataclasses.replace(TrainConfig.load(args.config), **{k: v for k, v in overrides.items() if v is not None})
    trainer = Trainer(config)
    summary = trainer.fit(progress=True)
    if trainer.history:
        summary["val_acc"] = trainer.history[-1]["val_acc"]
    print(json.dumps(summary))
    return 0
