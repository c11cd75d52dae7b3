"""Where rmtqa keeps things: the shipped model inside the repository, user data in RMTQA_HOME."""
from __future__ import annotations

from pathlib import Path

from model.local_files import rmtqa_home  # noqa: F401  (one rule for model/ and app/)

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_model_dir() -> Path:
    """The model shipped with the repository (`assets/default`); it may not exist yet."""
    return REPO_ROOT / "assets" / "default"
