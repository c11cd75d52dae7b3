"""Training the deep reader: a reader taught to answer from one window read with its heading.

A deep read (`model/deep.py`) puts every window that names the question's key beside the
question, `[initial memory | heading + window + question]`, and keeps the answers copied from
their windows. The shipped reader does that for bAbI and document facts, but it has never
read code: it answers "In which file is the class JSONDecoder defined?" with noise. This
trains a copy of it (`rmtqa train-deep`; the result ships as `<model>/deep/`, so fast and
re-read answers keep their weights and numbers) on exactly what deep mode shows it:

* code facts (`model/code_facts.py`) of packages training may read (`model/code_sources.py`:
  never a held-out one), each package ingested as `rmtqa ingest` would read it: a window that
  holds the fact's evidence line (at a random offset), headed by its file and enclosing
  definitions (`ingest/headings.py`), answers the fact; `negatives` windows that name the key
  but not the evidence (a call site, another file's import) answer `NO_ANSWER`, so deep mode
  skips them instead of copying their file's path;
* qa1 stories and document facts in book text (BABILong samples): the window around the
  last supporting fact answers the question, so deep mode keeps what it already reads.

Validation is greedy exact match on windows of held-out packages and held-out bAbI stories,
split into windows that hold the answer and windows that must say NO_ANSWER.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ingest.headings import WindowHeadings, record_spans
from ingest.pipeline import ingest_paths
from model.code_facts import KINDS, scan_code_facts
from model.code_samples import evidence_tokens, records_by_path
from model.code_sources import SourceRoot, python_source_roots, split_source_roots
from model.deep import NO_ANSWER, WindowIndex, question_key
from model.reread import normal_words
from model.tasks import ANSWER_TEMPLATE, QUESTION_TEMPLATE, NoiseSource, TaskGenerator
from model.tokenizer import Tokenizer, load_tokenizer
from model.train import _resolve, pad_queries


@dataclass
class DeepTrainConfig:
    output: str = "runs/deep"
    init_from: str = "assets/default"
    tokenizer: str = "assets/default"  # the directory whose tokenizer the reader reads with
    window: int = 64  # as DeepSettings.window
    code_share: float = 0.6  # of every batch; the rest is qa1 and needles, half each
    positives: int = 2  # windows holding a code fact's evidence, at different offsets
    negatives: float = 0.5  # NO_ANSWER windows per code fact (on average; 1:1 taught the reader to say NO_ANSWER to most)
    per_package: int | None = 400  # training windows from one package at most (variety over volume)
    max_package_kb: int = 1500  # larger packages are skipped (ingest time; torch alone is ~40 MB)
    code_windows: int = 40000  # the pool of training code windows
    val_packages: int = 6  # held-out packages validated on
    babi_dir: str = "../shared/data/babi"
    noise_dir: str = "../shared/data/books"
    noise_exclude: list[str] = field(default_factory=lambda: ["frankenstein.txt"])
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 50
    max_steps: int = 3000
    max_minutes: float | None = None
    eval_every: int = 250
    eval_windows: int = 192
    seed: int = 0
    threads: int | None = None


@dataclass
class WindowSample:
    prompt: list[int]  # heading + window + question
    answer: list[int]  # " answer" + eos
    kind: str  # a code-fact kind, "qa1" or "needle"
    holds_answer: bool


def code_windows(root: Path, tokenizer: Tokenizer, rng: random.Random, window: int, negatives: float, positives: int = 1) -> list[WindowSample]:
    """Training windows of one package (see the module doc); [] for a package without facts."""
    _, stream = ingest_paths([(root, ".")], tokenizer)
    if stream.tokens is None or stream.total == 0:
        return []
    tokens = stream.tokens
    decode = tokenizer.decode
    headings = WindowHeadings(tokens, record_spans(stream.records), decode, tokenizer.encode("\n"))
    scanned = WindowIndex(decode, tokens, window)  # the windows as a deep read scans them
    starts, words = scanned.starts, scanned.words
    records = records_by_path(stream.records)
    eos = [tokenizer.eos_id]
    out: list[WindowSample] = []
    for fact in scan_code_facts(root).facts:
        place = evidence_tokens(records, fact)
        key = question_key(fact.question, words)[0]
        if place is None or key is None or place[1] - place[0] > window:
            continue
        first, last = place
        question = tokenizer.encode(QUESTION_TEMPLATE.format(question=fact.question))
        for start in {rng.randint(max(0, last - window), first) for _ in range(positives)}:
            prompt = list(headings(start)) + list(tokens[start : start + window])
            if _readable(fact.answer, decode(prompt)):
                out.append(WindowSample(prompt + question, tokenizer.encode(ANSWER_TEMPLATE.format(answer=fact.answer)) + eos, fact.kind, True))
        evidence = decode(tokens[first:last]).strip()
        elsewhere = [s for s, held in zip(starts, words) if key in held and (s + window <= first or s >= last)]
        elsewhere = [s for s in elsewhere if evidence not in decode(headings(s))]  # a heading may show the evidence line
        count = int(negatives) + (rng.random() < negatives - int(negatives))
        for s in rng.sample(elsewhere, min(count, len(elsewhere))):
            prompt = list(headings(s)) + list(tokens[s : s + window])
            out.append(WindowSample(prompt + question, tokenizer.encode(ANSWER_TEMPLATE.format(answer=NO_ANSWER)) + eos, fact.kind, False))
    return out


def _readable(answer: str, text: str) -> bool:
    """Whether every word of the answer is in the text (a long signature may be cut off)."""
    held = set(normal_words(text).split())
    return all(word in held for word in normal_words(answer).split())


def code_pool(roots: Sequence[SourceRoot], tokenizer: Tokenizer, size: int, config: DeepTrainConfig, seed: int, log=print,
              per_package: int | None = None) -> list[WindowSample]:
    """Windows from packages in a seeded random order (at most `per_package` of each) until
    `size` are gathered."""
    rng = random.Random(seed)
    order = [part for r in roots for part in _small_parts(r.path, config.max_package_kb)]
    rng.shuffle(order)
    pool: list[WindowSample] = []
    for folder in order:
        if len(pool) >= size:
            break
        try:
            found = code_windows(folder, tokenizer, rng, config.window, config.negatives, config.positives)
        except Exception as error:  # noqa: BLE001 - a package that does not ingest is skipped, not fatal
            log(f"skipped {folder}: {type(error).__name__}: {error}")
            continue
        rng.shuffle(found)
        pool += found[:per_package]
        log(f"{folder}: {len(found)} windows (pool {len(pool)})")
    rng.shuffle(pool)
    return pool[:size]


def _small_parts(path: Path, max_kb: int) -> list[Path]:
    """`path` when its Python source is at most `max_kb`, else its subpackages that are (a
    large package such as transformers is read a model folder at a time); single-file modules
    are left out (a folder walk reads folders)."""
    if not path.is_dir():
        return []
    if _kilobytes(path) <= max_kb:
        return [path]
    return [part for child in sorted(path.iterdir()) if (child / "__init__.py").is_file() for part in _small_parts(child, max_kb)]


def _kilobytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.py") if f.is_file()) // 1024


def story_windows(generator: TaskGenerator, task: str, rng: random.Random, window: int) -> Iterator[WindowSample]:
    """Endless windows around the last supporting fact of BABILong samples of `task`."""
    while True:
        sample = generator.sample(window * 8, task)
        last = max(sample.supporting)
        first, end = sample.fact_positions[last], sample.fact_ends[last]
        if end - first > window:
            continue
        start = rng.randint(max(0, end - window), first)
        yield WindowSample(list(sample.context_ids[start : start + window]) + list(sample.question_ids), list(sample.answer_ids), task, True)


class DeepData:
    """Batches: `code_share` code windows, the rest qa1 and needle windows."""

    def __init__(self, config: DeepTrainConfig, tokenizer: Tokenizer, split: str, seed: int, code: list[WindowSample]):
        babi_dir, noise_dir = _resolve(config.babi_dir), _resolve(config.noise_dir)
        babi = {t: f for t in ("qa1",) if (f := next(iter(sorted(babi_dir.glob(f"{t}_*train.txt"))), None))} if babi_dir.is_dir() else {}
        noise = NoiseSource.from_directory(noise_dir, exclude=config.noise_exclude) if noise_dir.is_dir() else None
        stories = TaskGenerator(tokenizer, tasks=["qa1"], babi_files=babi, noise=noise, seed=seed, split=split if babi else None)
        rng = random.Random(seed)
        self.streams = {task: story_windows(stories, task, rng, config.window) for task in ("qa1", "needle")}
        self.code, self.config = code, config
        self.position = 0

    def batch(self, size: int) -> list[WindowSample]:
        n_code = round(size * self.config.code_share) if self.code else 0
        rows = []
        for _ in range(n_code):
            rows.append(self.code[self.position % len(self.code)])
            self.position += 1
        rows += [next(self.streams["qa1" if i % 2 == 0 else "needle"]) for i in range(size - n_code)]
        return rows


def loss_on(model, rows: list[WindowSample]) -> torch.Tensor:
    """Cross-entropy on the answer tokens of `[initial memory | prompt answer]`."""
    query, mask, labels = pad_queries([[(row.prompt, row.answer)] for row in rows])
    device = model.device
    empty = torch.zeros(len(rows), 0, dtype=torch.long, device=device)
    return model(empty, query.to(device), labels.to(device), query_mask=None if mask is None else mask.to(device)).loss


@torch.no_grad()
def greedy_accuracy(model, rows: list[WindowSample], eos_id: int) -> dict[str, float | int]:
    """Share of windows answered exactly (greedy), for windows that hold the answer and for
    windows that must say NO_ANSWER, and per kind."""
    memory = model.initial_memory(1)[0].detach()
    right: dict[str, list[bool]] = {}
    by_length: dict[int, list[WindowSample]] = {}
    for row in rows:
        by_length.setdefault(len(row.prompt), []).append(row)
    for group in by_length.values():
        answers = model.greedy_answers(memory.expand(len(group), *memory.shape), [r.prompt for r in group], 24, eos_id)
        for row, (ids, _) in zip(group, answers):
            ok = list(ids) + [eos_id] == list(row.answer)
            names = ["holds" if row.holds_answer else "no_answer", f"kind:{row.kind}"]
            names += ["code_holds"] if row.holds_answer and row.kind in KINDS else []
            for name in names:
                right.setdefault(name, []).append(ok)
    return {name: round(sum(v) / len(v), 4) for name, v in sorted(right.items())} | {"n": len(rows)}


def train_deep(config: DeepTrainConfig, log=print) -> Path:
    """Train (from `init_from`), validate every `eval_every` steps, save the best to `output`."""
    from model.backbones import load_rmt

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    init = _resolve(config.init_from)
    tokenizer = load_tokenizer(_resolve(config.tokenizer))
    model = load_rmt(init)
    train_roots, held_out = split_source_roots(python_source_roots())
    started = time.time()
    code = code_pool(train_roots, tokenizer, config.code_windows, config, config.seed, log, per_package=config.per_package)
    val_code = code_pool(held_out, tokenizer, config.eval_windows // 2, config, config.seed + 1, log,
                         per_package=max(config.eval_windows // (2 * config.val_packages), 1))
    log(f"pools: {len(code)} train, {len(val_code)} held-out code windows ({time.time() - started:.0f} s)")
    data = DeepData(config, tokenizer, "train", config.seed, code)
    val_data = DeepData(config, tokenizer, "val", config.seed + 1, [])
    val_rows = val_code + val_data.batch(config.eval_windows - len(val_code))
    seen_rows = [row for row in code[: config.eval_windows] if row.holds_answer]  # trained on: memorised or learned?
    output = _resolve(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "deep_train_config.json").write_text(json.dumps(asdict(config), indent=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = lambda step: min(1.0, (step + 1) / config.warmup_steps) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / config.max_steps, 1.0))))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.eval()
    best = greedy_accuracy(model, val_rows, tokenizer.eos_id)
    best_score = -1.0  # the first validation is always saved
    log(json.dumps({"step": 0, **best}))
    losses: list[float] = []
    started = time.time()
    for step in range(1, config.max_steps + 1):
        model.train()
        loss = loss_on(model, data.batch(config.batch_size))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        out_of_time = config.max_minutes is not None and time.time() - started > 60 * config.max_minutes
        if step % config.eval_every == 0 or step == config.max_steps or out_of_time:
            model.eval()
            result = greedy_accuracy(model, val_rows, tokenizer.eos_id)
            seen = greedy_accuracy(model, seen_rows, tokenizer.eos_id)["holds"]
            log(json.dumps({"step": step, "loss": round(sum(losses) / len(losses), 4), "minutes": round((time.time() - started) / 60, 1),
                            "trained_code_holds": seen, **result}))
            losses = []
            model.save_pretrained(output / "last")
            if _score(result) >= best_score:
                best_score = _score(result)
                model.save_pretrained(output / "best")
                (output / "best" / "validation.json").write_text(json.dumps({"step": step, **result}, indent=2))
        if out_of_time:
            break
    return output / "best"


def _score(result: dict) -> float:
    """What "best" means: right on the answer windows (code counted on its own, as the skill
    being learned) and quiet on the others."""
    return (result.get("holds", 0.0) + result.get("code_holds", 0.0) + result.get("no_answer", 0.0)) / 3
