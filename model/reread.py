"""Exact answers by re-reading the source (`mode: reread`).

The memory after a whole corpus keeps a blurred identity of exact values (digits, names):
the fast answer comes out in the right shape with wrong digits. The same reader copies them
almost perfectly when the fact sits beside the question (the direct rung). So, after the fast
answer, look again where the answer came from, knowing the question:

1. **Where to look.** The fast answer, and answers that start with the runner-up first
   tokens under the final memory, each locate the segments where their likelihood rose
   (`model.rises.find_rises`: a near-constant number of memories scored, whatever the corpus
   size). The fact may end up in the memory one segment late, so each place spans half the
   segment before it too.
2. **Re-read.** Each place is cut into short overlapping windows; each window is read with the
   question beside it, `[initial memory | window + question]`, exactly the direct rung the
   reader is trained on, and answered greedily. Short windows matter: with a whole 256-token
   segment of noise beside the question the tiny reader copied the right value only ~60% of
   the time (64 tokens: ~98%).
3. **Choose.** Every (window, answer) pair is a candidate: the reader's answer beside the
   window, and each memory answer the window holds verbatim. Pairs are ranked by, in order:
   whether the answer text occurs in its window (answers are copied); whether it is the fast
   answer and the memory is sure of it (questions resting on several facts, "where is Mary
   *now*", are the memory's strength: a window with an older fact must not overrule it; a
   blurred value is never that sure); how much of the question's idf-weighted content words
   the window holds (idf over the windows read, so the asked key weighs most);
   and the model's own evidence, the
   answer's per-token log-likelihood beside its window plus its per-token rise under the
   memory where the window sits. Without the word term the reader picks a distractor fact
   about another key as readily as the asked one (it never saw a window without the asked
   key in training); the model card has the numbers with and without it.

Cost: a few hundred scored memories and ~40 short windows, nearly independent of corpus length.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from model.question_types import content_words
from model.rises import find_rises

# Candidate memories' states (N, rows, d) for points -1 (initial memory) .. last segment.
MemoryAt = Callable[[Sequence[int]], Tensor]
TokenSpan = Callable[[int, int], Sequence[int]]

_WORD = re.compile(r"\w+")


def normal_words(text: str) -> str:
    """Lowercased words joined by one space: how answers and windows are compared."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass
class RereadSettings:
    """Knobs of a re-read; the defaults are the ones measured in the model card."""

    window: int = 64  # tokens per re-read window; windows overlap by half
    alternatives: int = 3  # answers under the final memory whose rises locate places
    places_per_answer: int = 2  # top rises followed per answer
    back: int | None = None  # tokens before a place's segment that are re-read too (default S/2)
    keep_fast_logprob: float = -0.01  # the memory is "sure" at this mean token log-prob (qa1 answers: > -0.007; wrong digits: < -0.027)


@dataclass
class Candidate:
    """One answer read from one window: the reader's answer beside it, or a memory answer it holds."""

    ids: list[int]
    text: str
    start: int  # window's first token in the corpus (for the chosen one: the span holding the answer)
    end: int
    segment: int  # the segment (0-based) the window starts in
    local: float  # mean log-prob of the answer (and eos) beside its window, from the initial memory
    rise: float  # mean per-token rise of that log-prob under the memory across the window's segment(s)
    occurs: bool  # the answer text occurs in the window's text
    memory_sure: bool = False  # it is the fast answer, and the memory gives it a high likelihood
    coverage: float = 0.0  # idf-weighted share of the question's content words in the window

    def rank_key(self) -> tuple:
        return (self.occurs, self.memory_sure, round(self.coverage, 2), self.local + self.rise)


@dataclass
class RereadAnswer:
    ids: list[int]
    text: str
    fast_ids: list[int]
    fast_text: str
    kept_fast: bool  # the memory's answer, confirmed in a window
    chosen: Candidate | None  # the window the answer was copied from (or confirmed in)
    fast_logprob: float  # mean token log-prob (with eos) of the fast answer under the final memory
    answer_logprob: float  # the same for the answer given
    candidates: list[Candidate] = field(default_factory=list)  # every (window, answer) pair, best first
    places: list[int] = field(default_factory=list)  # segments re-read (0-based)
    memories_scored: int = 0


@torch.no_grad()
def answer_alternatives(model, memory: Tensor, prompt_ids: Sequence[int], eos_id: int | None, count: int, max_new_tokens: int) -> list[list[int]]:
    """The greedy answer, then up to `count - 1` answers that start with the next most likely
    first tokens (each continued greedily): a blurred memory often ranks the right value second."""
    greedy = list(model.generate(memory, prompt_ids, max_new_tokens=max_new_tokens, eos_id=eos_id))
    answers = [greedy]
    if count <= 1:
        return answers
    first = model.next_token_logits(memory, prompt_ids)
    for token in first.topk(min(count + 1, first.numel())).indices.tolist():
        if len(answers) >= count:
            break
        if token == eos_id or (greedy and token == greedy[0]):
            continue
        rest = model.generate(memory, list(prompt_ids) + [token], max_new_tokens=max_new_tokens - 1, eos_id=eos_id)
        answers.append([token, *rest])
    return answers


def _mean_logprob(model, memories: Tensor, prompt: Sequence[int], answer: Sequence[int], eos_id: int | None) -> Tensor:
    target = list(answer) + ([eos_id] if eos_id is not None else [])
    return model.score(memories, list(prompt), target, batch_size=64) / max(len(target), 1)


@torch.no_grad()
def reread(
    model,
    decode: Callable[[Sequence[int]], str],
    question: str,
    prompt_ids: Sequence[int],
    memory_at: MemoryAt,
    last: int,
    token_ids: TokenSpan,
    total_tokens: int,
    *,
    eos_id: int | None,
    max_new_tokens: int = 16,
    settings: RereadSettings | None = None,
) -> RereadAnswer:
    """Answer `question` (prompt `prompt_ids`) from a corpus of `total_tokens` tokens read into
    memories 0..`last` (`memory_at([-1, j, ...])` gives them, -1 the initial memory), re-reading
    the places the memory points at (`token_ids(start, end)` gives their tokens)."""
    settings = settings or RereadSettings()
    size = int(model.config.segment_size)
    back = size // 2 if settings.back is None else settings.back
    step = max(settings.window // 2, 1)
    final = memory_at([last])[0]
    alternatives = answer_alternatives(model, final, prompt_ids, eos_id, settings.alternatives, max_new_tokens)
    fast = alternatives[0]

    cache: dict[int, Tensor] = {}

    def memories(points: Sequence[int]) -> Tensor:
        missing = [p for p in dict.fromkeys(points) if p not in cache]
        if missing:
            cache.update(zip(missing, memory_at(missing)))
        return torch.stack([cache[p] for p in points])

    places: list[int] = []
    for answer in alternatives:
        if not answer:
            continue
        found, _ = find_rises(lambda points, a=answer: model.score(memories(points), prompt_ids, a, batch_size=128).tolist(), -1, last,
                              top=settings.places_per_answer)
        places += [segment for segment, _ in found if segment not in places]
    places = places or [last]

    starts: set[int] = set()
    for segment in places:
        lo = max(0, segment * size - back)
        hi = min(total_tokens, (segment + 1) * size + step)
        starts.update(range(lo - lo % step, max(lo + 1, hi - step), step))
    windows = {start: list(token_ids(start, min(start + settings.window, total_tokens))) for start in sorted(starts) if start < total_tokens}

    initial = memories([-1])
    fast_logprob = float(_mean_logprob(model, final[None], prompt_ids, fast, eos_id)[0])
    fast_sure = bool(fast) and fast_logprob >= settings.keep_fast_logprob
    window_text = {start: normal_words(decode(window)) for start, window in windows.items()}
    pairs: list[Candidate] = []
    read = _read_windows(model, initial[0], windows, prompt_ids, eos_id, max_new_tokens)
    for start, window in windows.items():
        read_ids, read_local = read[start]
        # The reader's own answer beside this window, and every memory answer this window holds.
        held = [a for a in alternatives if a and a != read_ids and normal_words(decode(a)) and normal_words(decode(a)) in window_text[start]]
        for ids in ([read_ids] if read_ids else []) + held:
            text = decode(ids)
            local = read_local if ids is read_ids else float(_mean_logprob(model, initial, window + list(prompt_ids), ids, eos_id)[0])
            pairs.append(Candidate(
                ids=ids, text=text.strip(), start=start, end=start + len(window), segment=start // size, local=local,
                rise=_rise(model, memories, prompt_ids, ids, eos_id, start, start + len(window), size),
                occurs=bool(normal_words(text)) and normal_words(text) in window_text[start],
                memory_sure=fast_sure and ids == fast,
            ))
    _cover(pairs, question, {start: set(_WORD.findall(decode(w).lower())) for start, w in windows.items()})
    chosen = max(pairs, key=Candidate.rank_key) if pairs else None
    if chosen is not None and chosen.occurs:
        chosen.start, chosen.end = answer_span(decode, windows[chosen.start], chosen.start, chosen.text)
    ids = fast if chosen is None else chosen.ids
    fast_text = decode(fast).strip()
    kept = chosen is None or chosen.ids == fast
    answer_logprob = fast_logprob if kept else float(_mean_logprob(model, final[None], prompt_ids, ids, eos_id)[0])
    return RereadAnswer(ids=list(ids), text=decode(ids).strip(), fast_ids=fast, fast_text=fast_text, kept_fast=kept, chosen=chosen,
                        fast_logprob=fast_logprob, answer_logprob=answer_logprob,
                        candidates=sorted(pairs, key=Candidate.rank_key, reverse=True), places=places, memories_scored=len(cache))


def _read_windows(model, initial: Tensor, windows: dict[int, list[int]], prompt_ids: Sequence[int], eos_id: int | None,
                  max_new_tokens: int) -> dict[int, tuple[list[int], float]]:
    """Each window read with the question from the initial memory, answered greedily: {start:
    (answer ids, mean log-prob)}, windows of one length decoded as one batch."""
    by_length: dict[int, list[int]] = {}
    for start, window in windows.items():
        by_length.setdefault(len(window), []).append(start)
    read: dict[int, tuple[list[int], float]] = {}
    for starts in by_length.values():
        prompts = [windows[start] + list(prompt_ids) for start in starts]
        answers = model.greedy_answers(initial.expand(len(starts), *initial.shape), prompts, max_new_tokens, eos_id)
        read.update(zip(starts, answers))
    return read


def answer_span(decode: Callable[[Sequence[int]], str], window: Sequence[int], start: int, answer: str) -> tuple[int, int]:
    """The shortest span [start + i, start + j) of the window whose text holds the answer: what a
    source cites (a window may straddle two pages or files)."""
    want = normal_words(answer)
    j = next((j for j in range(1, len(window) + 1) if want in normal_words(decode(window[:j]))), len(window))
    i = next((i for i in range(j - 1, -1, -1) if want in normal_words(decode(window[i:j]))), 0)
    return start + i, start + j


def _rise(model, memories: Callable[[Sequence[int]], Tensor], prompt_ids: Sequence[int], ids: Sequence[int], eos_id: int | None,
          start: int, end: int, size: int) -> float:
    """Mean per-token rise of the answer's log-prob under the memory across the segment(s) the
    window [start, end) lies in: how much reading that place made the memory say it."""
    segments = sorted({start // size, (end - 1) // size})
    points = [point for segment in segments for point in (segment - 1, segment)]
    scores = _mean_logprob(model, memories(points), prompt_ids, ids, eos_id).tolist()
    return max(scores[2 * i + 1] - scores[2 * i] for i in range(len(segments)))


def _cover(candidates: list[Candidate], question: str, window_words: dict[int, set[str]]) -> None:
    """Set each candidate's `coverage`: the idf-weighted share of the question's content words
    (`content_words`: "where", "is", "the" say what kind of question, not what about) its
    window holds, idf over the windows read (the asked key, in few windows, weighs most). A
    content word in no window weighs as much as the rarest can: when the asked key is nowhere,
    no window covers the question (the ranking between windows is the same either way; the
    confidence sees the difference)."""
    words = content_words(question) or _WORD.findall(question.lower())
    count = len(window_words)
    idf = {w: math.log(1 + count / (1 + sum(w in ws for ws in window_words.values()))) for w in words}
    total = sum(idf.values()) or 1.0
    for candidate in candidates:
        held = window_words.get(candidate.start, set())
        candidate.coverage = sum(weight for w, weight in idf.items() if w in held) / total
