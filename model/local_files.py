"""Where local data lives and how files are fingerprinted, for model/ and app/ alike (no torch:
the CLI imports this at start-up)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def rmtqa_home() -> Path:
    """User data (corpora, runs, cached backbones): $RMTQA_HOME, else ~/.rmtqa."""
    return Path(os.environ.get("RMTQA_HOME") or Path.home() / ".rmtqa").expanduser()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (~0.25 s for SmolLM2's 98 MB GGUF)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
