"""A pretrained backbone converted once and kept as a transformers checkpoint (safetensors).

Converting SmolLM2's GGUF file (dequantising Q4_1, converting its tokenizer) takes ~24 s of
CPU on every load; the converted model and tokenizer are cached under
`$RMTQA_HOME/backbones/NAME-SHA` and later loads read safetensors. The folder is named by the
sha256 of the source file and its manifest records that hash, so a different source file
(another package version) is converted anew instead of silently reusing the old weights. A
conversion is written to a temporary folder and renamed into place: a killed conversion leaves
no half-written cache, and two processes converting at once (ranks of one torchrun) both end
up loading the same complete folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from model.local_files import file_sha256, rmtqa_home

MANIFEST = "rmtqa_backbone.json"
WEIGHTS = "model.safetensors"
Converter = Callable[[Path], tuple[nn.Module, Any]]  # source file -> (fp32 causal LM, HF tokenizer)


def cache_dir(name: str, sha256: str, home: Path | None = None) -> Path:
    return (home or rmtqa_home()) / "backbones" / f"{name}-{sha256[:16]}"


def is_complete(directory: Path, sha256: str) -> bool:
    """The manifest names this source hash and the weights file has the size it recorded."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        return manifest["source_sha256"] == sha256 and (directory / WEIGHTS).stat().st_size == manifest["weights_bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build_cache(name: str, source: Path, sha256: str, convert: Converter, home: Path | None = None) -> Path:
    """Convert `source` and move the result into place atomically; returns the cache folder."""
    final = cache_dir(name, sha256, home)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model, tokenizer = convert(source)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    manifest = {"name": name, "source": source.name, "source_sha256": sha256, "weights_bytes": (tmp / WEIGHTS).stat().st_size}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if final.exists() and not is_complete(final, sha256):
        shutil.rmtree(final)  # a damaged cache (files lost or truncated)
    try:
        tmp.rename(final)
    except OSError:  # another process finished first: keep its folder
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_complete(final, sha256):
            raise
    return final


def load_cached(
    name: str, source: Path, convert: Converter, dtype: torch.dtype = torch.float32, home: Path | None = None
) -> tuple[nn.Module, Any, str]:
    """(causal LM, HF tokenizer, source sha256), converting `source` first if no cache matches it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sha256 = file_sha256(source)
    directory = cache_dir(name, sha256, home)
    if not is_complete(directory, sha256):
        directory = build_cache(name, source, sha256, convert, home)
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, use_safetensors=True, local_files_only=True, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    return model, tokenizer, sha256
