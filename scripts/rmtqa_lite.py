"""`rmtqa` with only its train and eval commands, for a bare GPU machine.

The full command line imports every command, and ingest and serve need packages (langchain-core,
pypdf, gradio) that a training machine lacks and that training and evaluation never use. Same
commands, arguments and output: `python scripts/rmtqa_lite.py train CONFIG`, also under torchrun.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.cli import main as cli  # noqa: E402  (after the repository is importable)

cli.COMMAND_MODULES = ["app.cli.commands.train", "app.cli.commands.evaluate"]

if __name__ == "__main__":
    sys.exit(cli.main())
