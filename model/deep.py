"""Whole-corpus questions: read everything again, knowing the question (`mode: deep`).

The memory is written before the question is known, so past its trained length it fades
(qa1: ~55-60% at 128k) and it cannot keep every fact of a large corpus. A deep read goes
through the whole corpus once more with the question in hand and keeps only what answers it,
a *running answer*:

1. Every window of the corpus (64 tokens, overlapping by half) is checked for the question's
   rarest content word (idf over all windows; question and function words such as "where",
   "the" never count, nor a code question's form: "file", "defined"). A window without it
   cannot say anything about what is asked.
2. Each window that has it is read with the question beside it, `[initial memory | heading +
   window + question]` (the direct rung), in batches, and answered greedily. The heading
   (`ingest.headings`, when the corpus's documents are known) is what an editor would show
   above the window: its file and, in code, its enclosing class and function lines.
3. The running answer moves to a window's answer when that answer is copied from the window or
   its heading (its longest prefix that is, in order, a few words skipped at most: a small
   reader may run on past the words it copied, and "a, b" is read off "a, b=None"), and the
   window holds at least as many of the question's content words as the window that gave
   the running answer: a later mention of the same key overrides an earlier one (Mary moved
   again), a window that names only part of the key (another room's access code) does not
   override one that names all of it. A window that does not say answers NO_ANSWER (a deep
   reader is trained to, `model/deep_training.py`), which is never a copy.

Cost is linear in the corpus for the word check (no model) and proportional to the number of
windows that mention the key for the model; nothing depends on the memory, so it holds at
any length. Its limits are the reader's: questions whose answer is never stated next to the
asked key (qa2-qa5: "where is the football" needs who carried it) are not answered by
mentions alone. A reader trained to carry a running answer in its memory vectors
(`[memory | question | segment | memory]`) is the next step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from model.code_facts import code_fact_kind
from model.question_types import content_words
from model.reread import answer_span, normal_words

# What a deep reader answers for a window that does not say what is asked: no words, so it
# is never taken for a copied answer.
NO_ANSWER = "-"
MAX_COPY_GAP = 3  # words an answer may skip in its window ("a, b" from "a, b=None")


@dataclass
class DeepSettings:
    window: int = 64  # tokens per window; windows overlap by half
    batch: int = 128  # windows read by the model at once
    whole_words: bool = True  # an answer is copied in whole words only (see copied_prefix)


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


def reader_for(question: str, model, deep_reader):
    """Which reader reads `question` deep: a shipped deep reader (`model/deep_training.py`) for
    the question forms only it was trained on (code facts), the main reader for the rest: it
    was trained on qa1 and document facts alone and reads them as well or better (qa1 deep at
    128k / 1M: 100 / 100% against the deep reader's 95 / 90%, n = 20)."""
    return deep_reader if deep_reader is not None and code_fact_kind(question) is not None else model


def window_starts(length: int, window: int) -> list[int]:
    """Starts of the windows over `length` tokens, overlapping by half."""
    step = max(window // 2, 1)
    return list(range(0, max(length - step, 1), step))


class WindowIndex:
    """The windows of one corpus as a deep read scans them (starts, normalised texts, word
    sets): built once, shared by every question over that corpus."""

    def __init__(self, decode: Callable[[Sequence[int]], str], token_ids: Sequence[int], window: int):
        self.window, self.length = window, len(token_ids)
        self.starts = window_starts(len(token_ids), window)
        self.texts = [normal_words(decode(token_ids[s : s + window])) for s in self.starts]
        self.words = [set(text.split()) for text in self.texts]


def question_key(question: str, window_words: Sequence[set[str]]) -> tuple[str | None, list[str], dict[str, int]]:
    """(key, wanted, frequency): the question's content words that some window holds, how many
    windows hold each, and the rarest of them (the first on ties), which every window read
    must hold; key None when no window holds any."""
    wanted = [w for w in content_words(question) if any(w in held for held in window_words)]
    frequency = {w: sum(w in held for held in window_words) for w in wanted}
    key = min(wanted, key=lambda w: (frequency[w], wanted.index(w))) if wanted else None
    return key, wanted, frequency


def _in_order(want: list[str], words: list[str]) -> bool:
    """Whether `want` occurs in `words` in order, each word at most MAX_COPY_GAP words after
    the one before."""
    for first in (i for i, word in enumerate(words) if word == want[0]):
        at = first
        for word in want[1:]:
            at = next((j for j in range(at + 1, min(at + 2 + MAX_COPY_GAP, len(words))) if words[j] == word), -1)
            if at < 0:
                break
        else:
            return True
    return False


def copied_prefix(decode: Callable[[Sequence[int]], str], ids: Sequence[int], window_text: str, whole_words: bool = True) -> list[int]:
    """The longest prefix of an answer whose words occur, whole and in order, in the window's
    (normalised) text, skipping at most MAX_COPY_GAP words between two of them ("a, b" is
    read off "a, b=None"); [] when none does. Answers are copied: a small reader that copies
    the right words and then runs on ("kitchen kitchen kitchen") still copied them. With
    `whole_words`, a prefix must end where the answer has a space: "T" of
    "TimedRotatingHandler" is not a copy of the word "t", nor "utils/" of a mistyped
    "utils/load_imag.py" a copy of the folder (nor "kitchen" of "kitchenicesices": qa1 deep at
    32k, 40 dev samples, the deep reader 97.5% either way, the main reader 100% -> 97.5%)."""
    words = window_text.split()
    full = decode(ids)
    for k in range(len(ids), 0, -1):
        text = decode(ids[:k])
        cut_in_word = k < len(ids) and not full[len(text) : len(text) + 1].isspace()
        if whole_words and cut_in_word:
            continue
        want = normal_words(text).split()
        if want and _in_order(want, words):
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
    heading: Callable[[int], Sequence[int]] | None = None,
    index: WindowIndex | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], object] | None = None,
) -> DeepAnswer:
    """The running answer to `question` (prompt `prompt_ids`) over the corpus `token_ids`;
    `heading(start)`, when given, is put before each window (`ingest.headings`: its file and
    enclosing definitions), and answers may be copied from it too; `index`: the corpus's
    windows when already scanned (several questions over one corpus)."""
    settings = settings or DeepSettings()
    if index is None or index.window != settings.window or index.length != len(token_ids):
        index = WindowIndex(decode, token_ids, settings.window)
    starts, texts, words = index.starts, index.texts, index.words
    key, wanted, frequency = question_key(question, words)
    if key is None:
        return DeepAnswer([], "", None, None, None, len(starts), 0)
    reading = [i for i, held in enumerate(words) if key in held]
    idf = {w: math.log(1 + len(starts) / (1 + frequency[w])) for w in wanted}
    best: tuple[float, int, list[int], float] | None = None  # (coverage, window index, answer ids, its mean log-prob)
    updates: list[tuple[int, str]] = []
    prompt = list(prompt_ids)
    for b in range(0, len(reading), settings.batch):
        if cancelled():
            break
        chunk = reading[b : b + settings.batch]
        heads = {i: list(heading(starts[i])) if heading is not None else [] for i in chunk}
        by_length: dict[int, list[int]] = {}
        for i in chunk:
            by_length.setdefault(len(heads[i]) + len(token_ids[starts[i] : starts[i] + settings.window]), []).append(i)
        answers: dict[int, tuple[list[int], float]] = {}
        for group in by_length.values():
            prompts = [heads[i] + list(token_ids[starts[i] : starts[i] + settings.window]) + prompt for i in group]
            answers.update(zip(group, model.greedy_answers(initial_memory.expand(len(group), *initial_memory.shape), prompts, max_new_tokens, eos_id)))
        for i in chunk:  # in corpus order: the running answer
            read, local = answers[i]
            seen = f"{normal_words(decode(heads[i]))} {texts[i]}" if heads[i] else texts[i]
            ids = copied_prefix(decode, read, seen, settings.whole_words)
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
