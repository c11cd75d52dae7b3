"""The reader models a service reads and answers with, known by the fingerprint of their files."""
from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.corpus.errors import CorpusError


_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


def model_fingerprint(model_dir: str | Path) -> str:
    """"sha256:<hex>" over config.json and model.safetensors (cached by size and mtime)."""
    model_dir = Path(model_dir)
    files = [model_dir / "config.json", model_dir / "model.safetensors"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CorpusError(f"no RMT model in {model_dir} (missing {', '.join(missing)}); train one or pass --model DIR")
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    with _FINGERPRINT_LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    value = "sha256:" + digest.hexdigest()
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[key] = value
    return value


@dataclass
class LoadedModel:
    """A reader model and its tokenizer. `model` needs only the reader protocol used here:
    `config.segment_size`, `initial_memory(batch)`, `read(ids, attention_mask=, memory=)`,
    `generate(memory, prompt_ids, max_new_tokens, eos_id, temperature, top_p)` and
    `score(memories, prompt_ids, target_ids, batch_size)` (see `model.rmt`); re-reading also
    `greedy_answers` and `next_token_logits`. Its confidence calibration (`confidence.json`)
    and trained question types (`train_config.json`) are read from `directory` when present."""

    directory: Path
    fingerprint: str
    model: Any
    tokenizer: Any

    @functools.cached_property
    def calibration(self) -> Any:
        from model.confidence import Calibration

        return Calibration.load(self.directory)

    @functools.cached_property
    def trained_types(self) -> list[str] | None:
        from model.question_types import trained_types

        return trained_types(self.directory)

    @property
    def has_deep_reader(self) -> bool:
        from model.backbones import deep_reader_dir

        return deep_reader_dir(self.directory) is not None

    @functools.cached_property
    def deep_reader(self) -> Any:
        """The reader the directory ships for deep reads of code questions (`deep/`, trained to
        read a headed window beside the question; `model.deep.reader_for`), None without one."""
        from model.backbones import load_deep_reader

        reader = load_deep_reader(self.directory, device=getattr(self.model, "device", "cpu"))
        return reader.eval() if reader is not None else None

    @property
    def segment_size(self) -> int:
        return int(self.model.config.segment_size)

    def initial_memory(self) -> torch.Tensor:
        return self.model.initial_memory(1)[0].detach().to("cpu", torch.float32)

    def info(self) -> dict:
        memory = self.initial_memory()
        return {
            "dir": str(self.directory),
            "fingerprint": self.fingerprint,
            "segment_size": self.segment_size,
            "num_mem_tokens": int(memory.shape[0]),
            "hidden_size": int(memory.shape[1]),
        }
