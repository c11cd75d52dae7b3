"""Tokenizers behind one small interface.

The from-scratch reader uses a SentencePiece model (`tokenizer.model`, byte fallback on,
so any text round-trips); pretrained backbones (GPT-2, SmolLM2) bring a Hugging Face
tokenizer. Everything downstream (ingest, tasks, corpora) only needs `encode`, `decode`,
`eos_id` and `vocab_size`, plus a `fingerprint` so corpora never mix tokenizers.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Iterable, Protocol

SP_FILE = "tokenizer.model"


class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    fingerprint: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


class SentencePieceTokenizer:
    """A SentencePiece model; text is encoded without BOS/EOS (the caller adds them)."""

    def __init__(self, path: str | Path):
        import sentencepiece as spm

        self.path = Path(path)
        data = self.path.read_bytes()
        self.sp = spm.SentencePieceProcessor(model_proto=data)
        self.vocab_size = self.sp.get_piece_size()
        self.eos_id = self.sp.eos_id()
        self.fingerprint = "sentencepiece:" + hashlib.sha256(data).hexdigest()[:16]

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode(list(ids))

    def save(self, directory: str | Path) -> None:
        Path(directory, SP_FILE).write_bytes(self.path.read_bytes())


class HFTokenizer:
    """A Hugging Face tokenizer (GPT-2, SmolLM2, ...); special tokens are never added."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.vocab_size = len(tokenizer)
        eos = tokenizer.eos_token_id
        self.eos_id = eos if eos is not None else 0
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
        self.fingerprint = "hf:" + hashlib.sha256(vocab.encode()).hexdigest()[:16]

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def save(self, directory: str | Path) -> None:
        self.tok.save_pretrained(str(directory))


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The tokenizer stored next to a model's weights."""
    model_dir = Path(model_dir)
    if (model_dir / SP_FILE).is_file():
        return SentencePieceTokenizer(model_dir / SP_FILE)
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False))


def train_sentencepiece(
    texts: Iterable[str], output_dir: str | Path, vocab_size: int = 8192, max_sentences: int = 2_000_000
) -> SentencePieceTokenizer:
    """Train a BPE SentencePiece model with byte fallback on `texts` (one sentence per item)."""
    import sentencepiece as spm

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=0.9995,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        max_sentence_length=8192,
        split_digits=True,
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,  # encode(a) + encode(b) == encode(a + b) at spaces: pieces concatenate
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n", "\t"],
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        num_threads=2,
        minloglevel=2,
    )
    path = output_dir / SP_FILE
    path.write_bytes(proto.getvalue())
    return SentencePieceTokenizer(path)
