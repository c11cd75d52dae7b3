"""Whole-corpus questions: read everything again, knowing the question (`mode: deep`).

The memory is written before the question is known, so past its trained length it fades
(qa1: ~55-60% at 128k) and it cannot keep every fact of a large corpus. A deep read goes
through the whole corpus once more with the question in hand and keeps only what answers it,
a *running answer*:

1. Every window of the corpus (64 tokens, overlapping by half) is checked for the question's
   rarest content word (idf over all windows; question and function words such as "where",
   "the" never count). A window without it cannot say anything about what is asked.
2. Each window that has it is read with the question beside it, `[initial memory | window +
   question]` (the direct rung), in batches, and answered greedily.
3. The running answer moves to a window's answer when that answer is copied from the window
   (its longest prefix that is: a small reader may run on past the words it copied) and the window holds at least as many of the question's content words as the window that
   gave the running answer: a later mention of the same key overrides an earlier one (Mary
   moved again), a window that names only part of the key (another room's access code)
   does not override one that names all of it.

Cost is linear in the corpus for the word check (no model) and proportional to the number of
windows that mention the key for the model; nothing depends on the memory, so it holds at
any length. Its limits are the reader's: questions whose answer is never stated next to the
asked key (qa2-qa5: "where is the football" needs who carried it) are not answered by
mentions alone. No training is involved; a reader trained to carry a running answer in its
memory vectors (`[memory | question | segment | memory]`) is the next step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from model.question_types import content_words
from model.reread import answer_span, normal_words



@dataclass
class DeepSettings:
    window: int = 64  # tokens per window; windows overlap by half
    batch: int = 128  # windows read by the model at once


@dataclass
class DeepAnswer:
    ids: list[int]
    text: str
    start: int | None  # span of the corpus the running answer was copied from (None: nothing found)
    end: int | None
    key: str | None  # the question's rarest content word, the one every window read had
    windows: int  # windows in the corpus
    windows_read: int  # windows read by the model (those with the key)
    updates: list[tuple[int, str]] = field(default_factory=list)  # (window start, running answer) each time it moved
    local: float = float("-inf")  # mean token log-prob of the reader's answer beside the window it came from


def copied_prefix(decode: Callable[[Sequence[int]], str], ids: Sequence[int], window_text: str) -> list[int]:
    """The longest prefix of an answer whose words occur, whole, in the window's (normalised)
    text; [] when none does. Answers are copied: a small reader that copies the right words
    and then runs on ("kitchen kitchen kitchen", "kitchenicesices") still copied them."""
    padded = f" {window_text} "
    for k in range(len(ids), 0, -1):
        text = normal_words(decode(ids[:k]))
        if text and f" {text} " in padded:
            return list(ids[:k])
    return []


@torch.no_grad()
def deep_read(
    model,
    decode: Callable[[Sequence[int]], str],
    question: str,
    prompt_ids: Sequence[int],
    token_ids: Sequence[int],
    *,
    initial_memory: Tensor,
    eos_id: int | None,
    max_new_tokens: int = 16,
    settings: DeepSettings | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], object] | None = None,
) -> DeepAnswer:
    """The running answer to `question` (prompt `prompt_ids`) over the corpus `token_ids`."""
    settings = settings or DeepSettings()
    step = max(settings.window // 2, 1)
    starts = list(range(0, max(len(token_ids) - step, 1), step))
    texts = [normal_words(decode(token_ids[s : s + settings.window])) for s in starts]
    words = [set(text.split()) for text in texts]
    wanted = [w for w in content_words(question) if any(w in held for held in words)]
    if not wanted:
        return DeepAnswer([], "", None, None, None, len(starts), 0)
    frequency = {w: sum(w in held for held in words) for w in wanted}
    key = min(wanted, key=lambda w: (frequency[w], wanted.index(w)))
    reading = [i for i, held in enumerate(words) if key in held]
    idf = {w: math.log(1 + len(starts) / (1 + frequency[w])) for w in wanted}
    best: tuple[float, int, list[int], float] | None = None  # (coverage, window index, answer ids, its mean log-prob)
    updates: list[tuple[int, str]] = []
    prompt = list(prompt_ids)
    for b in range(0, len(reading), settings.batch):
        if cancelled():
            break
        chunk = reading[b : b + settings.batch]
        by_length: dict[int, list[int]] = {}
        for i in chunk:
            by_length.setdefault(len(token_ids[starts[i] : starts[i] + settings.window]), []).append(i)
        answers: dict[int, tuple[list[int], float]] = {}
        for group in by_length.values():
            prompts = [list(token_ids[starts[i] : starts[i] + settings.window]) + prompt for i in group]
            answers.update(zip(group, model.greedy_answers(initial_memory.expand(len(group), *initial_memory.shape), prompts, max_new_tokens, eos_id)))
        for i in chunk:  # in corpus order: the running answer
            read, local = answers[i]
            ids = copied_prefix(decode, read, texts[i])
            if not ids:
                continue
            coverage = sum(idf[w] for w in wanted if w in words[i])
            if best is None or coverage >= best[0] - 1e-9:
                best = (coverage, i, ids, local)
                updates.append((starts[i], decode(ids).strip()))
        if progress is not None:
            progress(min(b + settings.batch, len(reading)), len(reading))
    if best is None:
        return DeepAnswer([], "", None, None, key, len(starts), len(reading), updates)
    _, i, ids, local = best
    text = decode(ids).strip()
    start, end = answer_span(decode, token_ids[starts[i] : starts[i] + settings.window], starts[i], text)
    return DeepAnswer(list(ids), text, start, end, key, len(starts), len(reading), updates, local)
