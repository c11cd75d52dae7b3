"""The `rmtqa` command line.

Each subcommand lives in its own module under `app/cli/commands/` and exposes
`register(subparsers)`; this file only wires them together and turns any failure
into one clear line on stderr and a non-zero exit code (no tracebacks for users;
set RMTQA_DEBUG=1 to see them).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that provide subcommands, in the order `--help` lists them.
COMMAND_MODULES = [
    "app.cli.commands.ingest",
    "app.cli.commands.ask",
    "app.cli.commands.corpora",
    "app.cli.commands.check",
    "app.cli.commands.train",
    "app.cli.commands.evaluate",
    "app.cli.commands.serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmtqa",
        description="Question answering over whole corpora with a Recurrent Memory Transformer.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not built in this checkout
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("rmtqa: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into a line
        if os.environ.get("RMTQA_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"rmtqa: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
