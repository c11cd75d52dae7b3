"""BABILong-style evaluation of an RMT reader: accuracy by context length and fact depth.

Every sample is answered three ways from the same model, so the numbers are comparable:

* `rmt`: read the whole context into memory, then greedily generate the answer;
* `last_segment`: read only the final S tokens from the initial memory (no carried memory),
  which shows what the model gets without recurrence;
* `bm25`: read the one segment that BM25 ranks first for the question (from the initial
  memory), which shows what single-segment retrieval gets;
* `bm25_window` (deep mode): the window BM25 ranks first among the windows a deep read
  scans, headed as it heads them, read beside the question by the reader the deep read uses: chunked
  retrieval with the same reader, against which the deep read's key scan and running
  answer are measured.

Answers are scored by exact match after normalisation, as BABILong scores fine-tuned RMTs.
Samples drawn from a generator are stratified by depth (where the last supporting fact sits):
each is redrawn until its depth falls in its assigned bucket, and the depth reported is the
sample's own, so the depth x length heatmap has samples in every cell.
"""
from __future__ import annotations

import re
import string
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from model.babi import needle_kind
from model.code_facts import code_fact_kind
from model.confidence import Calibration, fast_features, reread_features
from model.deep import DeepAnswer, DeepSettings, WindowIndex, deep_read, reader_for
from model.question_types import question_type
from model.reread import RereadAnswer, RereadSettings, reread
from model.rmt import RecurrentMemoryTransformer
from model.tasks import TaskGenerator, TaskSample, parse_length
from model.tokenizer import Tokenizer

BASELINES = ("last_segment", "bm25")
DEEP_BASELINES = (*BASELINES, "bm25_window")
MODES = ("fast", "reread", "deep")
MAX_DEPTH_TRIES = 200  # redraws per sample to hit its depth bucket; then it is bucketed as it is
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: ' Kitchen.' -> 'kitchen'."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def exact_match(prediction: str, answer: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(answer)


def depth_bucket(depth: float, buckets: int) -> int:
    """Index of the equal-width bucket of [0, 1) that holds `depth`."""
    return min(int(depth * buckets), buckets - 1)


def bucket_labels(buckets: int) -> list[str]:
    return [f"{round(100 * i / buckets)}-{round(100 * (i + 1) / buckets)}%" for i in range(buckets)]


def stratified_samples(generator: TaskGenerator, length: int, n: int, buckets: int) -> Iterator[TaskSample]:
    """`n` samples of `length` tokens, the i-th redrawn until its depth is in bucket i % buckets."""
    for i in range(n):
        for _ in range(MAX_DEPTH_TRIES):
            sample = generator.sample(length)
            if depth_bucket(sample.depth, buckets) == i % buckets:
                break
        yield sample


# ----------------------------------------------------------------- BM25 retrieval


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def bm25_segment(segments: Sequence[str], question: str) -> int:
    """Index of the segment BM25 ranks first for the question (the first one on ties).

    BM25Plus rather than BM25Okapi: Okapi's idf is 0 for a word in one of two segments, so
    a two-segment context would always retrieve the first.
    """
    from rank_bm25 import BM25Plus

    if len(segments) == 1:
        return 0
    scores = BM25Plus([_words(s) for s in segments]).get_scores(_words(question))
    return int(np.argmax(scores))


def bm25_context(sample: TaskSample, tokenizer: Tokenizer, segment_size: int) -> list[int]:
    """The context segment (as the model cuts it) that BM25 retrieves for the question."""
    ids = sample.context_ids
    chunks = [ids[start : start + segment_size] for start in range(0, len(ids), segment_size)] or [[]]
    return chunks[bm25_segment([tokenizer.decode(chunk) for chunk in chunks], sample.question)]


# ----------------------------------------------------------------- reading and answering


def read_batch(
    model: RecurrentMemoryTransformer,
    contexts: Sequence[Sequence[int]],
    autocast_dtype: torch.dtype | None = None,
    on_segment: Callable[[int], object] | None = None,
    every_segment: list[Tensor] | None = None,
) -> Tensor:
    """Memory (B, M, d) after reading each context from the initial memory, in one batch
    (right-padded with a mask when lengths differ). `on_segment(tokens)` counts progress;
    `every_segment`, when given, collects the memory after each segment (B, M, d), as a
    corpus saves it (a re-read looks back at them)."""
    longest = max(len(c) for c in contexts)
    memory = model.initial_memory(len(contexts))
    if longest == 0:
        return memory
    ids = torch.zeros(len(contexts), longest, dtype=torch.long)
    mask = torch.zeros(len(contexts), longest, dtype=torch.long)
    for i, context in enumerate(contexts):
        ids[i, : len(context)] = torch.as_tensor(list(context), dtype=torch.long)
        mask[i, : len(context)] = 1
    attention_mask = None if bool(mask.all()) else mask.to(model.device)
    segment = model.config.segment_size
    for index, memory in enumerate(model.read(ids, attention_mask, autocast_dtype=autocast_dtype)):
        if every_segment is not None:
            every_segment.append(memory.detach().float().cpu())
        if on_segment is not None:
            on_segment(int(mask[:, index * segment : (index + 1) * segment].sum()))
    return memory


def answer(model: RecurrentMemoryTransformer, tokenizer: Tokenizer, memory: Tensor, question_ids: Sequence[int], max_new_tokens: int = 16) -> str:
    """Greedy answer decoded from one memory (M, d), stopping at eos."""
    return tokenizer.decode(model.generate(memory, question_ids, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id))


def reread_sample(model: RecurrentMemoryTransformer, tokenizer: Tokenizer, sample: TaskSample, row: int, memories: Sequence[Tensor],
                  max_new_tokens: int = 16, settings: RereadSettings | None = None) -> RereadAnswer:
    """The re-read answer (model/reread.py) of batch row `row`, from the memories after every
    segment of its context (`memories`: (B, M, d) per segment, as `read_batch` collects them)."""
    size = model.config.segment_size
    last = max((len(sample.context_ids) + size - 1) // size - 1, -1)
    initial = model.initial_memory(1)[0].detach().float().cpu()

    def memory_at(points: Sequence[int]) -> Tensor:
        return torch.stack([initial if p < 0 else memories[p][row] for p in points])

    context = sample.context_ids
    return reread(model, tokenizer.decode, sample.question, sample.question_ids, memory_at, last, lambda a, b: context[a:b], len(context),
                  eos_id=tokenizer.eos_id, max_new_tokens=max_new_tokens, settings=settings)


def deep_sample(model: RecurrentMemoryTransformer, tokenizer: Tokenizer, sample: TaskSample, max_new_tokens: int = 16,
                heading: Callable[[int], Sequence[int]] | None = None, index: WindowIndex | None = None) -> DeepAnswer:
    """The deep answer (model/deep.py): the whole context read again with the question
    (`heading`: what heads each window, `ingest.headings`; `index`: its windows, if scanned)."""
    initial = model.initial_memory(1)[0].detach()
    return deep_read(model, tokenizer.decode, sample.question, sample.question_ids, sample.context_ids, initial_memory=initial,
                     eos_id=tokenizer.eos_id, max_new_tokens=max_new_tokens, heading=heading, index=index)


class WindowRetriever:
    """The `bm25_window` baseline: BM25 over the windows a deep read scans (the deep read's own
    `WindowIndex`, indexed once: a repository's questions share it), the top window read beside
    the question."""

    def __init__(self, tokenizer: Tokenizer, heading: Callable[[int], Sequence[int]] | None):
        self.tokenizer, self.heading = tokenizer, heading
        self._indexed: tuple[WindowIndex, object] | None = None

    def answer(self, model: RecurrentMemoryTransformer, sample: TaskSample, windows: WindowIndex, max_new_tokens: int) -> str:
        from rank_bm25 import BM25Plus

        if self._indexed is None or self._indexed[0] is not windows:
            self._indexed = (windows, BM25Plus([text.split() for text in windows.texts]) if len(windows.texts) > 1 else None)
        bm25 = self._indexed[1]
        start = windows.starts[int(np.argmax(bm25.get_scores(_words(sample.question))))] if bm25 is not None else 0
        head = list(self.heading(start)) if self.heading is not None else []
        prompt = head + list(sample.context_ids[start : start + windows.window]) + list(sample.question_ids)
        memory = model.initial_memory(1)
        (ids, _), = model.greedy_answers(memory, [prompt], max_new_tokens, self.tokenizer.eos_id)
        return self.tokenizer.decode(ids)


def judged_answer(model: RecurrentMemoryTransformer, tokenizer: Tokenizer, sample: TaskSample, memory: Tensor,
                  reread_result: RereadAnswer | None, calibration: Calibration | None, trained: Sequence[str], max_new_tokens: int) -> tuple[str, float | None]:
    """(answer, confidence): the re-read answer when there is one, else the fast answer from
    `memory` (M, d); the confidence from `calibration` (None without one), as the service gives it."""
    typed = question_type(sample.question) in trained
    if reread_result is not None:
        confidence = None if calibration is None else calibration.confidence("reread", reread_features(typed, reread_result))
        return reread_result.text, confidence
    ids = list(model.generate(memory, sample.question_ids, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id))
    if calibration is None:
        return tokenizer.decode(ids), None
    target = ids + [tokenizer.eos_id]
    logprob = float(model.score(memory[None], sample.question_ids, target)[0]) / len(target)
    return tokenizer.decode(ids), calibration.confidence("fast", fast_features(typed, logprob))


def question_kind(sample: TaskSample) -> str | None:
    """The kind of fact a question asks for, where its task has kinds (document facts, code
    facts), so a report can say which kinds the reader keeps."""
    if sample.task == "needle":
        return needle_kind(sample.question)
    return code_fact_kind(sample.question) if sample.task == "code" else None


def shared_contexts(contexts: Sequence[Sequence[int]]) -> tuple[list[Sequence[int]], list[int]]:
    """(the distinct contexts, each one's row among them): questions over one repository share
    one context object, which is then read once, not once per question."""
    distinct: list[Sequence[int]] = []
    rows: dict[int, int] = {}
    for context in contexts:
        if id(context) not in rows:
            rows[id(context)] = len(distinct)
            distinct.append(context)
    return distinct, [rows[id(context)] for context in contexts]


def method_contexts(method: str, samples: Sequence[TaskSample], tokenizer: Tokenizer, segment_size: int) -> list[list[int]]:
    """What each method reads: the whole context, its final segment, or the BM25 segment."""
    if method == "rmt":
        return [s.context_ids for s in samples]
    if method == "last_segment":
        return [s.context_ids[-segment_size:] for s in samples]
    return [bm25_context(s, tokenizer, segment_size) for s in samples]


# ----------------------------------------------------------------- the evaluation


def _summary(hits: list[tuple[int, str | None, bool, float | None]], buckets: int, threshold: float | None = None) -> dict:
    """Accuracy overall, per depth bucket (None where empty) and, when the questions have
    kinds (`question_kind`), per kind, from (bucket, kind, correct, confidence) tuples; with a
    `threshold` (answers below it abstain) also "abstained" and "accuracy_when_answered"."""
    labels = bucket_labels(buckets)
    by_depth = []
    for b in range(buckets):
        cell = [ok for bucket, _, ok, _ in hits if bucket == b]
        by_depth.append({"depth": labels[b], "accuracy": sum(cell) / len(cell) if cell else None, "n": len(cell)})
    accuracy = sum(ok for _, _, ok, _ in hits) / len(hits) if hits else None
    summary = {"accuracy": accuracy, "n": len(hits), "by_depth": by_depth}
    if threshold is not None and hits and all(confidence is not None for _, _, _, confidence in hits):
        answered = [ok for _, _, ok, confidence in hits if confidence is not None and confidence >= threshold]
        summary["abstained"] = 1 - len(answered) / len(hits)
        summary["accuracy_when_answered"] = sum(answered) / len(answered) if answered else None
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for _, kind, ok, _ in hits:
        if kind is not None:
            by_kind[kind].append(ok)
    if by_kind:
        summary["by_kind"] = [{"kind": kind, "accuracy": sum(cell) / len(cell), "n": len(cell)} for kind, cell in sorted(by_kind.items())]
    return summary


def _groups(
    source: TaskGenerator | Sequence[TaskSample], lengths: Iterable[int | str] | None, samples: int | None, buckets: int
) -> list[tuple[int, Iterator[TaskSample], int]]:
    """(length, samples, count) per length: drawn lazily from a generator (1M-token samples
    are big), or given samples grouped by their context length."""
    if isinstance(source, TaskGenerator):
        if lengths is None or samples is None:
            raise ValueError("evaluating a generator needs lengths and a number of samples")
        parsed = [parse_length(length) for length in lengths]
        return [(length, stratified_samples(source, length, samples, buckets), samples) for length in parsed]
    by_length: dict[int, list[TaskSample]] = defaultdict(list)
    for sample in source:
        by_length[len(sample.context_ids)].append(sample)
    return [(length, iter(group), len(group)) for length, group in sorted(by_length.items())]


def _batches(samples: Iterator[TaskSample], size: int) -> Iterator[list[TaskSample]]:
    batch: list[TaskSample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate(
    model: RecurrentMemoryTransformer,
    tokenizer: Tokenizer,
    generator_or_samples: TaskGenerator | Sequence[TaskSample],
    lengths: Iterable[int | str] | None = None,
    samples: int | None = None,
    *,
    depth_buckets: int = 5,
    baselines: Sequence[str] | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
    max_new_tokens: int = 16,
    progress: bool = False,
    mode: str = "fast",
    calibration: Calibration | None = None,
    trained: Sequence[str] = (),
    deep_reader: RecurrentMemoryTransformer | None = None,
    heading: Callable[[int], Sequence[int]] | None = None,
) -> dict:
    """Exact-match accuracy per context length (and depth bucket) of the model and baselines.

    With a generator, `samples` samples are drawn per length in `lengths`, stratified by depth;
    with a list of samples, they are grouped by context length. Contexts of one length are
    read in batches of `batch_size`; answers are generated one sample at a time. Returns
    {"task", "depth_buckets", "results": [{"length", "accuracy", "n", "by_depth", "seconds",
    "read_seconds", "tokens_per_s"}, ...], "baselines": {name: [{"length", "accuracy", "n",
    "by_depth"}, ...]}}; with document facts, results and baselines also have "by_kind"
    ([{"kind", "accuracy", "n"}, ...]); so do code facts. Samples that share one context
    object (a repository's questions) have it read once per batch.

    `mode` is how the model (not the baselines) answers: "fast" from the final memory,
    "reread" (model/reread.py): the fast answer's places in the context re-read with the
    question, or "deep" (model/deep.py): the whole context read again with the question (no
    memory; "read_seconds"/"tokens_per_s" then time that pass), code-fact questions by
    `deep_reader` when given (`model.deep.reader_for`), each window headed by `heading` (for
    questions over one ingested corpus, `ingest.headings`). Reported as "mode". Baselines
    default to BASELINES, and DEEP_BASELINES in deep mode. With a `calibration` (model/confidence.py; `trained`: the
    reader's trained question types), the model's results also have "abstained" (share below
    the calibration's threshold) and "accuracy_when_answered", as the service would answer.
    """
    from tqdm import tqdm

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (expected {', '.join(MODES)})")
    if baselines is None:
        baselines = DEEP_BASELINES if mode == "deep" else BASELINES
    unknown = set(baselines) - set(DEEP_BASELINES)
    if unknown:
        raise ValueError(f"unknown baselines: {', '.join(sorted(unknown))} (expected {', '.join(DEEP_BASELINES)})")
    retriever = WindowRetriever(tokenizer, heading)
    scanned: tuple[Sequence[int], WindowIndex] | None = None

    def windows_of(context: Sequence[int]) -> WindowIndex:
        """The context's windows, scanned once for the deep read and the window baseline (and
        for every question over one repository)."""
        nonlocal scanned
        if scanned is None or scanned[0] is not context:
            scanned = (context, WindowIndex(tokenizer.decode, context, DeepSettings.window))
        return scanned[1]
    groups = _groups(generator_or_samples, lengths, samples, depth_buckets)
    segment = model.config.segment_size
    bar = tqdm(total=sum(length * count for length, _, count in groups), unit="tok", unit_scale=True, disable=not progress, dynamic_ncols=True)
    was_training = model.training
    model.eval()
    if deep_reader is not None:
        deep_reader.eval()
    tasks: set[str] = set()
    results: list[dict] = []
    baseline_results: dict[str, list[dict]] = {name: [] for name in baselines}
    try:
        for length, group, _ in groups:
            bar.set_postfix_str(f"length {length:,}")
            hits: dict[str, list[tuple[int, str | None, bool, float | None]]] = {name: [] for name in ("rmt", *baselines)}
            start, read_seconds, read_tokens = time.perf_counter(), 0.0, 0
            for batch in _batches(group, batch_size):
                tasks.update(s.task for s in batch)
                buckets = [depth_bucket(s.depth, depth_buckets) for s in batch]
                kinds = [question_kind(s) for s in batch]
                for method in hits:
                    t0 = time.perf_counter()
                    if method == "bm25_window":
                        for i, sample in enumerate(batch):
                            prediction = retriever.answer(reader_for(sample.question, model, deep_reader), sample, windows_of(sample.context_ids), max_new_tokens)
                            hits[method].append((buckets[i], kinds[i], exact_match(prediction, sample.answer), None))
                        continue
                    contexts, rows = shared_contexts(method_contexts(method, batch, tokenizer, segment))
                    rereading = method == "rmt" and mode == "reread"
                    every: list[Tensor] | None = [] if rereading else None
                    if method == "rmt" and mode == "deep":  # no memory: the corpus is read again with each question
                        for i, sample in enumerate(batch):
                            prediction = deep_sample(reader_for(sample.question, model, deep_reader), tokenizer, sample, max_new_tokens, heading,
                                                     windows_of(sample.context_ids)).text
                            hits[method].append((buckets[i], kinds[i], exact_match(prediction, sample.answer), None))
                        bar.update(sum(len(s.context_ids) for s in batch))
                        read_seconds += time.perf_counter() - t0
                        read_tokens += sum(len(s.context_ids) for s in batch)
                        continue
                    memory = read_batch(model, contexts, autocast_dtype, bar.update if method == "rmt" else None, every)
                    if method == "rmt":
                        read_seconds += time.perf_counter() - t0
                        read_tokens += sum(len(c) for c in contexts)
                        bar.update(sum(len(s.context_ids) for s in batch) - sum(len(c) for c in contexts))  # the shared reads
                    for i, sample in enumerate(batch):
                        confidence = None
                        if method == "rmt":
                            result = reread_sample(model, tokenizer, sample, rows[i], every, max_new_tokens) if rereading and sample.context_ids else None
                            prediction, confidence = judged_answer(model, tokenizer, sample, memory[rows[i]], result, calibration, trained, max_new_tokens)
                        else:
                            prediction = answer(model, tokenizer, memory[rows[i]], sample.question_ids, max_new_tokens)
                        hits[method].append((buckets[i], kinds[i], exact_match(prediction, sample.answer), confidence))
            seconds = time.perf_counter() - start
            results.append(
                {
                    "length": length,
                    **_summary(hits["rmt"], depth_buckets, None if calibration is None else calibration.threshold),
                    "seconds": round(seconds, 4),
                    "read_seconds": round(read_seconds, 4),
                    "tokens_per_s": round(read_tokens / read_seconds) if read_seconds else None,
                }
            )
            for name in baselines:
                baseline_results[name].append({"length": length, **_summary(hits[name], depth_buckets)})
    finally:
        bar.close()
        model.train(was_training)
    return {"task": ",".join(sorted(tasks)), "mode": mode, "depth_buckets": bucket_labels(depth_buckets), "results": results, "baselines": baseline_results}


# ----------------------------------------------------------------- reporting


def format_length(length: int) -> str:
    """1000000 -> '1M', 32000 -> '32k', 200 -> '200' (BABILong's decimal names)."""
    for unit, scale in (("M", 1_000_000), ("k", 1000)):
        if length >= scale and length % (scale // 10) == 0:
            return f"{length / scale:g}{unit}"
    return str(length)


def plot_heatmap(report: dict, path: str | Path, title: str | None = None) -> None:
    """Accuracy by depth bucket (rows) x context length (columns), n in every cell; empty
    cells are grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["depth_buckets"]
    columns = report["results"]
    grid = np.full((len(rows), len(columns)), np.nan)
    for c, result in enumerate(columns):
        for r, cell in enumerate(result["by_depth"]):
            if cell["accuracy"] is not None:
                grid[r, c] = cell["accuracy"]
    figure, axes = plt.subplots(figsize=(1.3 * len(columns) + 2.5, 0.7 * len(rows) + 1.8))
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="lightgrey")
    image = axes.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for c, result in enumerate(columns):
        for r, cell in enumerate(result["by_depth"]):
            text = "n=0" if cell["accuracy"] is None else f"{cell['accuracy']:.2f}\nn={cell['n']}"
            axes.text(c, r, text, ha="center", va="center", fontsize=8)
    axes.set_xticks(range(len(columns)), [format_length(r["length"]) for r in columns])
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel("depth of the last supporting fact")
    axes.set_title(title or f"{report['task']}: exact match")
    figure.colorbar(image, ax=axes, label="accuracy")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
