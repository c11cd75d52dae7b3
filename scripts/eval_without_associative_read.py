"""`rmtqa eval` with a reader's associative memory still written but never read: run it beside a
plain `rmtqa eval` with the same arguments to see whether the reader uses that memory at all.

    python scripts/eval_without_associative_read.py --model DIR --task needle --lengths 0 --samples 200 --json
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.associative import LayerMemories  # noqa: E402

LayerMemories._read_hook = lambda self, index, module, args, kwargs: None  # before any model is built

from app.cli.main import main  # noqa: E402

sys.exit(main(["eval", *sys.argv[1:]]))
