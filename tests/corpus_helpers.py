"""Shared pieces of the corpus tests: a tiny random reader, a minimal PDF writer, and a
deterministic stand-in reader whose memory records whether a planted fact was read."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "assets" / "default" / "tokenizer.model"
SEGMENT = 32
MEM = 4


def make_model_dir(directory: Path, seed: int = 0) -> Path:
    """A tiny random Llama-style RMT (hidden 64, 2 layers, M=4, S=32) with the shipped
    SentencePiece tokenizer. std 0.2 weights so the memory actually changes the output."""
    from model.backbones import build_rmt, tiny_llama_config
    from model.tokenizer import load_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(TOKENIZER, directory / "tokenizer.model")
    vocab = load_tokenizer(directory).vocab_size
    config = tiny_llama_config(vocab, hidden_size=64, num_hidden_layers=2, intermediate_size=128, initializer_range=0.2)
    build_rmt(config, num_mem_tokens=MEM, segment_size=SEGMENT, seed=seed).eval().save_pretrained(directory)
    return directory


_SHARED: dict[int, Path] = {}


def shared_model_dir(seed: int = 0) -> Path:
    """`make_model_dir` once per test process (building a model costs seconds on a busy CPU)."""
    if seed not in _SHARED:
        import atexit
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="rmtqa-test-model-"))
        atexit.register(shutil.rmtree, directory, True)
        _SHARED[seed] = make_model_dir(directory / "model", seed=seed)
    return _SHARED[seed]


def book_lines(count: int, seed: int = 0, words: int = 9) -> list[str]:
    """Deterministic English-ish lines (no external data needed)."""
    vocab = ("the old ship sailed north across a grey sea while captain walton wrote long letters "
             "to his sister about ice fog hope and the strange traveller they found").split()
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(vocab), (count, words), generator=generator).tolist()
    return [" ".join(vocab[i] for i in row).capitalize() + "." for row in picks]


def write_text(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def write_pdf(path: Path, pages: Sequence[Sequence[str]]) -> Path:
    """A minimal valid PDF: one Helvetica text line per string, pages in order."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index, lines in enumerate(pages):
        body = "BT /F1 10 Tf 14 TL 50 760 Td " + " T* ".join(f"{_pdf_string(line)} Tj" for line in lines) + " ET"
        data = body.encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {page_ids[index] + 1} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


class FactReader:
    """Stands in for the RMT with known behaviour: memory (M=2, d=4) whose [0, 0] becomes 1
    once a token in `fact_ids` has been read; the answer's score is 5 * that flag, so its
    likelihood rises exactly where the fact is. Implements the reader protocol of
    `app.service.LoadedModel` (read with masks, generate, score, initial_memory)."""

    def __init__(self, fact_ids: Sequence[int], answer_ids: Sequence[int], segment_size: int = SEGMENT):
        self.fact = torch.tensor(sorted(set(fact_ids)))
        self.answer = list(answer_ids)
        self.config = SimpleNamespace(segment_size=segment_size, num_mem_tokens=2)
        self.read_segments = 0
        self.scored = 0

    def initial_memory(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, 2, 4)

    def read(self, input_ids, attention_mask=None, memory=None, autocast_dtype=None) -> Iterator[torch.Tensor]:
        memory = self.initial_memory(input_ids.shape[0]) if memory is None else memory.float().clone()
        size = self.config.segment_size
        for start in range(0, input_ids.shape[1], size):
            ids = input_ids[:, start : start + size]
            real = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask[:, start : start + size].bool()
            hit = (torch.isin(ids, self.fact) & real).any(dim=1).float()
            memory = memory.clone()
            memory[:, 0, 0] = torch.maximum(memory[:, 0, 0], hit)
            self.read_segments += 1
            yield memory

    def generate(self, memory, prompt_ids, max_new_tokens=32, eos_id=None, temperature=0.0, top_p=1.0, generator=None) -> Iterator[int]:
        yield from self.answer[:max_new_tokens]

    def score(self, memories, prompt_ids, target_ids, batch_size=32) -> torch.Tensor:
        self.scored += memories.shape[0]
        return memories[:, 0, 0].float() * 5.0 - 1.0


class CountingReader:
    """Wraps a real reader and counts the segments it reads (append/change tests)."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.read_segments = 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def read(self, *args, **kwargs):
        for memory in self.model.read(*args, **kwargs):
            self.read_segments += 1
            yield memory
