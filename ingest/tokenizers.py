"""The tokenizer side of ingestion: anything that maps text to ids, plus a byte fallback.

Ingestion must not wait for a trained model, so `ByteTokenizer` (UTF-8 bytes as ids) lets a
dry run count and segment a corpus before any model exists; the report names the tokenizer
so such counts are never mistaken for model tokens.
"""
from __future__ import annotations

from typing import Callable, Iterable

Encoder = Callable[[list[str]], list[list[int]]]


class ByteTokenizer:
    """UTF-8 bytes as token ids (vocabulary 256, plus an end-of-text id 256)."""

    vocab_size = 257
    eos_id = 256
    fingerprint = "bytes:utf-8"

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def batch_encoder(tokenizer) -> Encoder:
    """A function encoding a list of texts, from an object with `encode_batch` or `encode`,
    or from a plain callable text -> ids."""
    if hasattr(tokenizer, "encode_batch"):
        return tokenizer.encode_batch
    encode = tokenizer.encode if hasattr(tokenizer, "encode") else tokenizer
    return lambda texts: [encode(text) for text in texts]


def tokenizer_name(tokenizer) -> str:
    """A short identity for reports: the tokenizer's fingerprint, else its class name."""
    return getattr(tokenizer, "fingerprint", None) or type(tokenizer).__name__
