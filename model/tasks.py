"""BABILong-style long-context samples (Kuratov et al. 2024).

The facts of a bAbI story are kept in order and dropped at random sentence boundaries
into a contiguous run of book text, so the context has exactly a target length in tokens;
the question comes last. Every sentence is tokenized on its own with its leading separator
space (" " + sentence) and the ids are concatenated, which equals tokenizing the
space-joined text for tokenizers whose pieces concatenate at spaces (ours: SentencePiece
without a dummy prefix). Book sentences are tokenized once, lazily, and cached as numpy
arrays, so even 1M-token samples are cheap to build.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .babi import ACTORS, MORE_ACTORS, TASKS, BabiSample, generate_babi, generate_needle, parse_babi, split_babi
from .tokenizer import Tokenizer

# The app formats a user's question the same way, so train and serve prompts match.
QUESTION_TEMPLATE = "\nQuestion: {question}\nAnswer:"
ANSWER_TEMPLATE = " {answer}"

# End punctuation (maybe closing a quote), then space, then not a lowercase word ("?" she said).
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u2019\u201d)]))\s+(?![a-z])")
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF[^\n]*\n", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^(\*\*\*\s*END OF|End of (the )?Project Gutenberg)", re.MULTILINE | re.IGNORECASE)


def parse_length(text: str | int) -> int:
    """'1k' -> 1000, '32k' -> 32000, '1M' -> 1000000, '512' -> 512.

    Decimal units, as BABILong names its lengths: "1M" is a million tokens, not 2**20.
    """
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise ValueError(f"not a length: {text!r} (expected e.g. 512, 4k, 128k, 1M)")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]
    return round(float(match.group(1)) * scale)


def read_text(path: str | Path) -> str:
    """A text file in whatever encoding books come in: UTF-8 (BOM or not), else cp1252."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def split_sentences(text: str, max_words: int = 60) -> list[str]:
    """Sentences of a text, Project Gutenberg header and footer removed, whitespace normalised.

    Sentences longer than `max_words` (or text without punctuation, such as tables of
    contents) are cut into word chunks, so facts always have nearby places to go.
    """
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    sentences = []
    for sentence in _SENTENCE_END.split(" ".join(text.split())):
        words = sentence.split()
        sentences += [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]
    return sentences


class NoiseSource:
    """Sentences of some documents (books, or an ingested corpus) to pad contexts with.

    Samples are contiguous runs of sentences from a random start, continuing into the
    next document (and wrapping around), so padding reads like real documents.
    """

    BLOCK = 512  # sentences tokenized together

    def __init__(
        self,
        source: str | Path | Mapping[str, str] | Sequence[str],
        include: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        max_words: int = 60,
    ):
        """`source` is a folder of .txt files (named by stem, e.g. "moby-dick"; "moby-dick.txt"
        also matches), a mapping name -> text, or a list of texts (named doc0, doc1, ...).
        `include` and `exclude` pick documents by name; an unknown name is an error, so a
        typo never leaks a held-out book into training.
        """
        include = None if include is None else set(include)
        exclude = set(exclude)
        if isinstance(source, (str, Path)):
            documents = {p.stem: read_text(p) for p in sorted(Path(source).glob("*.txt"))}
            include = None if include is None else {n.removesuffix(".txt") for n in include}
            exclude = {n.removesuffix(".txt") for n in exclude}
        elif isinstance(source, Mapping):
            documents = dict(source)
        else:
            documents = {f"doc{i}": text for i, text in enumerate(source)}
        include = set(documents) if include is None else include
        unknown = (include | exclude) - set(documents)
        if unknown:
            raise ValueError(f"unknown documents: {', '.join(sorted(unknown))}")
        self.documents = {n: t for n, t in documents.items() if n in include and n not in exclude}
        self.max_words = max_words
        self.names: list[str] = []  # documents that gave sentences, in order
        self.sentences: list[str] = []
        for name, text in self.documents.items():
            sentences = split_sentences(text, max_words)
            self.names += [name] * bool(sentences)
            self.sentences += sentences
        if not self.sentences:
            raise ValueError("no sentences in the noise documents")
        self._tokenizer: Tokenizer | None = None  # whose ids the block cache holds
        self._block_ids: list[np.ndarray | None] = []
        self._block_offsets: list[np.ndarray | None] = []

    @classmethod
    def from_directory(
        cls, directory: str | Path, include: Iterable[str] | None = None, exclude: Iterable[str] = ()
    ) -> NoiseSource:
        """The .txt files of a folder; the same as `NoiseSource(Path(directory), ...)`."""
        return cls(Path(directory), include=include, exclude=exclude)

    def split(self, held_out: Iterable[str]) -> tuple[NoiseSource, NoiseSource]:
        """(rest, held out) by document name, so evaluation pads with text training never saw."""
        held_out = set(held_out)
        return (
            NoiseSource(self.documents, exclude=held_out, max_words=self.max_words),
            NoiseSource(self.documents, include=held_out, max_words=self.max_words),
        )

    def __len__(self) -> int:
        return len(self.sentences)

    def _use(self, tokenizer: Tokenizer) -> None:
        if tokenizer is not self._tokenizer:  # token cache belongs to one tokenizer
            self._tokenizer = tokenizer
            n_blocks = -(-len(self.sentences) // self.BLOCK)
            self._block_ids = [None] * n_blocks
            self._block_offsets = [None] * n_blocks

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of block `b` (flat) and each sentence's start offset (plus the end)."""
        if self._block_ids[b] is None:
            texts = [" " + s for s in self.sentences[b * self.BLOCK : (b + 1) * self.BLOCK]]
            encode_batch = getattr(self._tokenizer, "encode_batch", None)
            encoded = encode_batch(texts) if encode_batch else [self._tokenizer.encode(t) for t in texts]
            lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
            self._block_offsets[b] = np.concatenate([[0], np.cumsum(lengths)])
            self._block_ids[b] = np.fromiter(
                (i for ids in encoded for i in ids), dtype=np.int32, count=int(lengths.sum())
            )
        return self._block_ids[b], self._block_offsets[b]

    def sample(
        self, n_tokens: int, tokenizer: Tokenizer, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exactly `n_tokens` token ids of consecutive sentences from a random start.

        The last sentence is cut to fit. Also returns the offsets where a fact may go: 0
        and the end of every whole sentence (never after the cut one).
        """
        self._use(tokenizer)
        n_blocks = len(self._block_ids)
        b, lo = divmod(int(rng.integers(len(self.sentences))), self.BLOCK)
        id_parts, bound_parts, total, stalled = [], [np.zeros(1, dtype=np.int64)], 0, 0
        while True:
            ids, offsets = self._block(b)
            ends = offsets[lo + 1 :] - offsets[lo] + total  # run length after each sentence
            k = int(np.searchsorted(ends, n_tokens))  # the sentence that reaches n_tokens
            if k < len(ends):
                id_parts.append(ids[offsets[lo] : offsets[lo + k + 1]])
                bound_parts.append(ends[: k + int(ends[k] == n_tokens)])
                break
            id_parts.append(ids[offsets[lo] :])
            bound_parts.append(ends)
            stalled = stalled + 1 if ends[-1] == total else 0
            if stalled > n_blocks:
                raise ValueError("the noise documents tokenize to nothing")
            total = int(ends[-1])
            b, lo = (b + 1) % n_blocks, 0
        return np.concatenate(id_parts)[:n_tokens], np.concatenate(bound_parts)


@dataclass
class TaskSample:
    """Token ids of one long-context question; `depth` places the last supporting fact."""

    context_ids: list[int]
    question_ids: list[int]
    answer_ids: list[int]  # " " + answer, then eos
    answer: str
    question: str
    task: str
    fact_positions: list[int]  # token offset of each fact in the context
    depth: float  # start of the last supporting fact / context length, in [0, 1)
    facts: list[str] = field(default_factory=list)  # the story's statements, in context order
    fact_ends: list[int] = field(default_factory=list)  # token offset just after each fact
    supporting: list[int] = field(default_factory=list)  # indices of the facts the answer rests on


def make_sample(
    babi: BabiSample,
    noise: NoiseSource | None,
    tokenizer: Tokenizer,
    target_tokens: int,
    rng: np.random.Generator,
) -> TaskSample:
    """BABILong construction: the story's facts, in order, at random boundaries of book text.

    The context is exactly `target_tokens` tokens, facts included (the last noise sentence
    is cut to fit); with no noise, a target of 0, or facts that alone reach the target, it
    is just the facts.
    """
    fact_ids = [np.asarray(tokenizer.encode(" " + f), dtype=np.int32) for f in babi.facts]
    budget = target_tokens - sum(len(ids) for ids in fact_ids)
    if noise is None or budget <= 0:
        noise_ids, bounds = np.zeros(0, np.int32), np.zeros(1, np.int64)
    else:
        noise_ids, bounds = noise.sample(budget, tokenizer, rng)
    slots = np.sort(rng.integers(len(bounds), size=len(fact_ids)))  # boundary index per fact
    pieces, positions, ends, offset, done = [], [], [], 0, 0
    for ids, slot in zip(fact_ids, slots):
        cut = int(bounds[slot])
        pieces.append(noise_ids[done:cut])
        offset, done = offset + cut - done, cut
        positions.append(offset)
        pieces.append(ids)
        offset += len(ids)
        ends.append(offset)
    pieces.append(noise_ids[done:])
    context = np.concatenate(pieces).tolist()
    last = positions[max(babi.supporting)]
    return TaskSample(
        context_ids=context,
        question_ids=tokenizer.encode(QUESTION_TEMPLATE.format(question=babi.question)),
        answer_ids=tokenizer.encode(ANSWER_TEMPLATE.format(answer=babi.answer)) + [tokenizer.eos_id],
        answer=babi.answer,
        question=babi.question,
        task=babi.task,
        fact_positions=positions,
        depth=last / len(context),
        facts=list(babi.facts),
        fact_ends=ends,
        supporting=list(babi.supporting),
    )


def direct_sample(sample: TaskSample) -> TaskSample:
    """The same question with its context moved into the answering segment, before the
    question: the task by attention alone, without memory (the trainer's stage -1, R0)."""
    return replace(sample, question_ids=list(sample.context_ids) + list(sample.question_ids), context_ids=[])


class TaskGenerator:
    """Endless samples of some tasks: official bAbI questions where files (or parsed
    samples) are given, generated stories otherwise, and with probability
    `needle_probability` a needle fact among 0-2 distractor facts instead.

    `split` ("train" or "val") keeps only that side of `split_babi(samples, val_fraction,
    split_seed)` of the official questions; `split_seed` is separate from `seed` so a
    training and a validation generator with different seeds still split alike.
    Generated stories are fresh for any seed, so they need no split. With files, a
    `generated_fraction` of stories is generated anyway, with actors from a wider cast.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        tasks: Sequence[str] = TASKS,
        babi_files: Mapping[str, str | Path | Sequence[BabiSample]] | None = None,
        noise: NoiseSource | None = None,
        seed: int = 0,
        needle_probability: float = 0.0,
        num_facts: int | None = None,
        split: str | None = None,
        val_fraction: float = 0.05,
        split_seed: int = 0,
        generated_fraction: float = 0.0,
    ):
        unknown = set(tasks) - set(TASKS) - {"needle"}
        if unknown:
            raise ValueError(f"unknown tasks: {', '.join(sorted(unknown))}")
        if split not in (None, "train", "val"):
            raise ValueError(f"split must be None, 'train' or 'val', not {split!r}")
        self.tokenizer, self.tasks, self.noise = tokenizer, list(tasks), noise
        self.needle_probability, self.num_facts = needle_probability, num_facts
        self.generated_fraction = generated_fraction
        self.parsed: dict[str, list[BabiSample]] = {}
        for task, source in (babi_files or {}).items():
            if task not in self.tasks:
                continue
            samples = parse_babi(source, task) if isinstance(source, (str, Path)) else list(source)
            if split is not None:
                samples = split_babi(samples, val_fraction, split_seed)[split == "val"]
            if not samples:
                raise ValueError(f"no {task} questions in the {split or 'given'} split")
            self.parsed[task] = samples
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the sample stream: the same seed gives the same samples again."""
        self.rng = np.random.default_rng(seed)

    def story(self, task: str | None = None) -> BabiSample:
        """A bAbI (or needle) sample, before padding."""
        rng = self.rng
        if task is None:
            needle = rng.random() < self.needle_probability
            task = "needle" if needle else self.tasks[int(rng.integers(len(self.tasks)))]
        if task == "needle":
            return generate_needle(rng, num_distractors=int(rng.integers(3)))
        if task in self.parsed and not (self.generated_fraction > 0 and rng.random() < self.generated_fraction):
            return self.parsed[task][int(rng.integers(len(self.parsed[task])))]
        cast = MORE_ACTORS + ACTORS if task in self.parsed else None  # a wider cast beside the files
        return generate_babi(task, rng, self.num_facts, cast)

    def sample(self, target_tokens: int | str, task: str | None = None) -> TaskSample:
        """One sample with a context of `target_tokens` tokens (e.g. 4000 or "4k"); 0 = facts only."""
        return make_sample(self.story(task), self.noise, self.tokenizer, parse_length(target_tokens), self.rng)
