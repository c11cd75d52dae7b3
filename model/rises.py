"""Where in a corpus an answer came from, without chunked retrieval.

The memory after segment j is a summary of everything read up to j. If segment j holds the
fact behind an answer, the answer's log-likelihood under the memory jumps at j:
rise(j) = s(j) - s(j-1), where s(j) = log p(answer | question, memory after j) and s(-1)
uses the model's initial memory. Scoring every saved memory would make asking cost grow with
the corpus, so `find_rises` searches coarse to fine instead: score a fixed number of evenly
spaced checkpoints, then subdivide the interval(s) whose total rise is largest, until the
best intervals are single segments. Each round is one batched `score` call; small corpora
are scored exhaustively within the same budget (~80 memories), so an ask costs about the
same for 16k tokens as for a million, where scoring every memory would grow linearly.

Trade-off: an interval's total rise is a proxy; a fact whose rise is cancelled by a later
fall inside the same coarse interval can be missed (the answer then still comes from the
final memory; only its source is less precise). A beam > 1 keeps runners-up alive.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Scorer = Callable[[Sequence[int]], Sequence[float]]


def find_rises(score: Scorer, lo: int, hi: int, *, points: int = 16, refine: int = 16, beam: int = 2, top: int = 3,
               exhaustive: int = 80) -> tuple[list[tuple[int, float]], int]:
    """Segments j in (lo, hi] with the largest single-step rises s(j) - s(j-1), best first.

    `score(points)` returns s at each point of a sorted list (points are lo..hi; lo is
    usually -1, the initial memory); it is called once per round with all the round's points
    (one batch). Up to `exhaustive` points, every point is scored in one round. Beyond, a
    beam search: `points` evenly spaced points first, then each round splits the `beam`
    intervals of largest total rise (among the previous round's) into `refine` parts, until
    they are single segments. Rounds grow as log N / log refine (3 for a million tokens at
    S=256) and points scored stay near `exhaustive` (~80 at a million tokens, ~140 at
    100M), so an ask costs about the same for any corpus. Returns ([(segment, rise), ...]
    with positive rises only, up to `top`) and the number of points scored.
    """
    if hi <= lo:
        return [], 0
    parts = max(2, refine)
    scored: dict[int, float] = {}

    def ensure(candidates: Sequence[int]) -> None:
        new = sorted({int(p) for p in candidates} - scored.keys())
        if new:
            scored.update(zip(new, (float(v) for v in score(new))))

    first = hi - lo + 1 if hi - lo + 1 <= exhaustive else points
    ensure(np.linspace(lo, hi, first).round().astype(int).tolist())
    current = _intervals(scored, lo, hi)
    while True:
        best = sorted(current, key=lambda ab: scored[ab[1]] - scored[ab[0]], reverse=True)[:beam]
        wide = [(a, b) for a, b in best if b - a > 1]
        if not wide:
            break
        todo: list[int] = []
        for a, b in wide:
            todo.extend(np.linspace(a, b, min(parts + 1, b - a + 1)).round().astype(int).tolist()[1:-1])
        ensure(todo)
        # Beam search: the next round only looks inside this round's best intervals.
        current = [pair for a, b in best for pair in _intervals(scored, a, b)]
    keys = sorted(scored)
    steps = sorted(((scored[b] - scored[a], b) for a, b in zip(keys, keys[1:]) if b == a + 1), reverse=True)
    return [(segment, rise) for rise, segment in steps[:top] if rise > 0], len(scored)


def _intervals(scored: dict[int, float], a: int, b: int) -> list[tuple[int, int]]:
    keys = sorted(k for k in scored if a <= k <= b)
    return list(zip(keys, keys[1:]))


def cut_points(start: int, end: int, boundaries: Sequence[int], pieces: int = 4, limit: int = 16) -> list[int]:
    """Prefix ends inside segment [start, end) for finding the part of it that matters:
    every document boundary (so a source never straddles two pages or files), plus cuts
    into `pieces` even parts; always ends with `end`. At most `limit` cuts."""
    cuts = {b for b in boundaries if start < b < end}
    cuts = set(sorted(cuts)[: max(limit - pieces, 0)])
    step = max((end - start) // pieces, 1)
    cuts.update(range(start + step, end, step))
    cuts.add(end)
    return sorted(cuts)[-limit:] if len(cuts) > limit else sorted(cuts)
