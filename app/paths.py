"""Where rmtqa keeps things: the shipped model inside the repository, user data in RMTQA_HOME."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_model_dir() -> Path:
    """The model shipped with the repository (`assets/default`); it may not exist yet."""
    return REPO_ROOT / "assets" / "default"


def rmtqa_home() -> Path:
    """User data (corpora, runs): $RMTQA_HOME, else ~/.rmtqa."""
    return Path(os.environ.get("RMTQA_HOME") or Path.home() / ".rmtqa").expanduser()
