"""Curriculum training of an RMT reader: `rmtqa train CONFIG.json`.

The curriculum grows the number of context segments (facts only -> 1 -> 2 -> 4 -> ...); the
next stage starts when teacher-forced exact match on held-out samples passes a threshold.
Half of every batch comes from the current stage, the rest from shorter ones, so earlier
skills are not forgotten; `anchor_batch` adds a fixed share of the memoryless stages.
Checkpoints are resumable (weights, optimizer and data position, all safetensors + JSON, never
pickle); `log.jsonl` gets one JSON object per log step.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from model.backbones import build_pretrained_rmt, build_rmt, load_rmt, tiny_llama_config
from model.babi import needle_questions, where_is_questions
from model.distributed import Distributed
from model.rmt import IGNORE_INDEX, Probe, RMTOutput
from model.tasks import ANSWER_TEMPLATE, QUESTION_TEMPLATE, NoiseSource, TaskGenerator, TaskSample, direct_sample
from model.tokenizer import SP_FILE, HFTokenizer, SentencePieceTokenizer, load_tokenizer

REPO = Path(__file__).resolve().parents[1]
QA = Callable[[str, str], tuple[list[int], list[int]]]  # (question, answer) -> their token ids


@dataclass
class TrainConfig:
    output: str = "runs/default"
    tokenizer: str = "assets/default/tokenizer.model"
    init_from: str | None = None  # an RMT model directory to continue from
    backbone: dict = field(default_factory=dict)  # overrides for tiny_llama_config
    # instead, a pretrained backbone: {"source": a name in model.backbones.BACKBONE_SOURCES,
    # "lora": LoraSettings as a dict, or null to train the memory alone}; saved as an adapter
    pretrained: dict | None = None
    num_mem_tokens: int = 16  # with init_from: more than the loaded model has grows its memory
    segment_size: int = 512
    bptt_depth: int | None = None
    memory_update: str = "replace"  # or "gated" (see RMTConfig)
    token_shift: int = 0  # see RMTConfig
    # an associative memory per layer (RMTConfig.associative_keys / associative_write); with
    # init_from, a reader without one gets one (answering as before until trained)
    associative_keys: int = 0
    associative_write: str = "memory"
    tasks: list[str] = field(default_factory=lambda: ["qa1"])
    needle_probability: float = 0.0
    babi_dir: str | None = "../shared/data/babi"  # None: our own bAbI generator only
    babi_val_fraction: float = 0.05
    generated_fraction: float = 0.0  # share of training stories generated with a wider cast of actors
    noise_dir: str | None = "../shared/data/books"
    noise_exclude: list[str] = field(default_factory=lambda: ["frankenstein.txt"])  # held out for evaluation
    # context segments per stage; 0 = facts only, -1 = facts in the answering segment (no memory)
    curriculum: list[int] = field(default_factory=lambda: [-1, 0, 1, 2, 4, 8, 16])
    promote_at: float | list[float] = 0.9  # one threshold, or one per curriculum stage
    # [step, stage] pairs: after that step the curriculum moves to that stage whatever validation
    # says (logged as "scheduled_to"); a hand-made schedule, written down so a run reproduces it.
    stage_at_step: list[list[int]] = field(default_factory=list)
    # Per-segment state supervision: after every context segment, up to this many questions
    # about facts stated so far (qa1: "Where is X?" per actor placed), answered from that
    # segment's memory; in the direct stage, extra questions over the same facts. 0 = off.
    probe_questions: int = 0
    batch_size: int | list[int] = 8  # one size, or one per curriculum stage (long stages cost more per sample)
    # Samples of the memoryless stages (direct and facts only) added to every step once they are
    # passed, in a second, short pass: a fixed share of the lowest rungs, which otherwise fade to a
    # sample or two per batch at long stages and decay (R0/R1). 0 = off.
    anchor_batch: int = 0
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    max_steps: int = 20000  # training stops here
    # where the cosine reaches min_lr (default max_steps): a run stopped early and a later run
    # that resumes it with another horizon (a final anneal) are both written down exactly
    decay_steps: int | None = None
    max_minutes: float | None = None
    weight_decay: float = 0.01
    clip: float = 1.0
    eval_every: int = 100
    eval_samples: int = 96
    save_every: int = 100
    precision: str = "fp32"  # or "bf16" (autocast; weights stay fp32)
    gradient_checkpointing: bool = False
    lm_weight: float = 0.0  # auxiliary next-token loss on context segments
    keep_weight: float = 0.0  # penalty on the memory's relative change per segment (see RecurrentMemoryTransformer.forward)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        data = json.loads(Path(path).read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training settings in {path}: {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def __post_init__(self) -> None:
        missing = [stage for _, stage in self.stage_at_step if stage not in self.curriculum]
        if missing:
            raise ValueError(f"stage_at_step names stages not in the curriculum: {missing}")


def _resolve(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else REPO / p


def pad_queries(rows: list[list[tuple[list[int], list[int]]]]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Right-padded queries, their mask (None when all real) and labels on answer tokens only.

    A row is a list of (question_ids, answer_ids) turns, concatenated: usually one turn; several
    let one pass over a story supervise several questions (the direct stage's extra questions).
    """
    flat = [[token for question, answer in row for token in (*question, *answer)] for row in rows]
    length = max(len(ids) for ids in flat)
    query = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for i, (row, ids) in enumerate(zip(rows, flat)):
        query[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1
        offset = 0
        for question, answer in row:
            offset += len(question)
            labels[i, offset : offset + len(answer)] = torch.tensor(answer, dtype=torch.long)
            offset += len(answer)
    return query, (None if bool(mask.all()) else mask), labels


def collate(samples: list[TaskSample], device: torch.device, extra_turns: list[list[tuple[list[int], list[int]]]] | None = None) -> dict[str, torch.Tensor]:
    """Right-pad contexts and `[question answer]` queries; labels only on answer tokens.
    `extra_turns[i]` (question, answer) pairs go before sample i's question in its query."""
    ctx_len = max(len(s.context_ids) for s in samples)
    context = torch.zeros(len(samples), ctx_len, dtype=torch.long)
    context_mask = torch.zeros(len(samples), ctx_len, dtype=torch.long)
    for i, s in enumerate(samples):
        context[i, : len(s.context_ids)] = torch.tensor(s.context_ids, dtype=torch.long)
        context_mask[i, : len(s.context_ids)] = 1
    extra_turns = extra_turns or [[] for _ in samples]
    query, query_mask, labels = pad_queries([[*turns, (s.question_ids, s.answer_ids)] for s, turns in zip(samples, extra_turns)])
    out = dict(context_ids=context, context_mask=None if bool(context_mask.all()) else context_mask, query_ids=query, query_mask=query_mask, labels=labels)
    return {k: (v.to(device) if v is not None else None) for k, v in out.items()}


def collate_probes(questions: list[list[tuple[int, list[int], list[int]]]], device: torch.device) -> list[Probe]:
    """One `Probe` per number of segments read, from each sample's (after_segments,
    question_ids, answer_ids) questions (see `probe_questions`)."""
    by_step: dict[int, list[tuple[int, list[int], list[int]]]] = {}
    for row, sample_questions in enumerate(questions):
        for after, question, answer in sample_questions:
            by_step.setdefault(after, []).append((row, question, answer))
    probes = []
    for after, items in sorted(by_step.items()):
        query, mask, labels = pad_queries([[(q, a)] for _, q, a in items])
        rows = torch.tensor([row for row, _, _ in items], dtype=torch.long)
        probes.append(Probe(after, rows.to(device), query.to(device), labels.to(device), None if mask is None else mask.to(device)))
    return probes


def draw_sample(tasks: TaskGenerator, stage: int, segment_size: int, rng: random.Random) -> TaskSample:
    """A sample for a curriculum stage (see `stage_tokens`); stage -1 is "direct": the facts sit in
    the answering segment itself, so the backbone first learns the task by attention alone and
    the memory later only has to carry what attention already knows how to use."""
    sample = tasks.sample(stage_tokens(stage, segment_size, rng))
    return direct_sample(sample) if stage < 0 else sample


def known_questions(sample: TaskSample, stated: int) -> list[tuple[str, str]]:
    """Questions the first `stated` facts of a sample answer: for qa1 every actor's "Where is
    X?", for needles every fact's own question; for other tasks the sample's own question once
    its supporting facts are stated."""
    if sample.task == "qa1":
        return where_is_questions(sample.facts[:stated])
    if sample.task == "needle":
        return needle_questions(sample.facts[:stated])
    return [(sample.question, sample.answer)] if max(sample.supporting, default=0) < stated else []


def probe_questions(sample: TaskSample, segment_size: int, per_segment: int, qa: QA, rng: random.Random) -> list[tuple[int, list[int], list[int]]]:
    """(after_segments, question_ids, answer_ids): after every context segment, up to
    `per_segment` random questions that the facts stated by its end answer (`known_questions`),
    for per-segment state supervision; `qa(question, answer)` tokenizes a pair."""
    found = []
    length = len(sample.context_ids)
    for after in range(1, -(-length // segment_size) + 1):
        end = min(after * segment_size, length)
        pairs = known_questions(sample, sum(fact_end <= end for fact_end in sample.fact_ends))
        found += [(after, *qa(q, a)) for q, a in rng.sample(pairs, min(per_segment, len(pairs)))]
    return found


def direct_turns(sample: TaskSample, count: int, qa: QA, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """Up to `count` extra questions for a direct-stage sample, asked in its query before its
    own question: the facts, then question-answer turns, then its question (whose ids it
    already starts with the facts, which move to the first turn). One pass over the story
    supervises several bindings for the price of a few tokens."""
    pairs = [(q, a) for q, a in known_questions(sample, len(sample.facts)) if q != sample.question]
    turns = [qa(q, a) for q, a in rng.sample(pairs, min(count, len(pairs)))]
    if not turns:
        return []
    facts = sample.question_ids[: len(sample.question_ids) - len(qa(sample.question, sample.answer)[0])]
    return [(facts + turns[0][0], turns[0][1]), *turns[1:]]


def stage_tokens(stage: int, segment_size: int, rng: random.Random) -> int:
    """A context length for a curriculum stage: 0 (and -1) mean facts only, n fills (n/2, n] segments."""
    if stage <= 0:
        return 0
    low = (stage // 2) * segment_size if stage > 1 else segment_size // 4
    return rng.randint(low + 1, stage * segment_size)


class Trainer:
    def __init__(self, config: TrainConfig, on_log: Callable[[dict], None] | None = None):
        self.config = config
        self.on_log = on_log
        self.out = _resolve(config.output)
        self.device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else ("cpu" if config.device == "auto" else config.device))
        self.dist = Distributed.from_env(self.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.rng = random.Random(self.dist.seed(config.seed))

        if config.init_from:
            self.model = load_rmt(_resolve(config.init_from), device=self.device).train()
            if config.num_mem_tokens != self.model.config.num_mem_tokens:
                self.model.widen_memory(config.num_mem_tokens, seed=config.seed)
            self.tokenizer = load_tokenizer(_resolve(config.init_from))
        elif config.pretrained:
            model, tokenizer = build_pretrained_rmt(config.pretrained["source"], config.pretrained.get("lora"), config.num_mem_tokens, config.segment_size, config.bptt_depth, seed=config.seed, memory_update=config.memory_update, token_shift=config.token_shift)
            self.model, self.tokenizer = model.to(self.device).train(), HFTokenizer(tokenizer)
        else:
            self.tokenizer = SentencePieceTokenizer(_resolve(config.tokenizer))
            backbone = tiny_llama_config(self.tokenizer.vocab_size, eos_id=self.tokenizer.eos_id, **config.backbone)
            self.model = build_rmt(backbone, config.num_mem_tokens, config.segment_size, config.bptt_depth, seed=config.seed, memory_update=config.memory_update, token_shift=config.token_shift).to(self.device).train()
        if config.associative_keys:
            if self.model.cell.associative is None:
                self.model.add_associative_memory(config.associative_keys, config.associative_write)
            elif (self.model.config.associative_keys, self.model.config.associative_write) != (config.associative_keys, config.associative_write):
                raise ValueError(f"the loaded reader's associative memory ({self.model.config.associative_keys} keys, written by {self.model.config.associative_write}) is not the configured one ({config.associative_keys}, {config.associative_write})")

        noise_dir = _resolve(config.noise_dir)
        noise = NoiseSource.from_directory(noise_dir, exclude=config.noise_exclude) if noise_dir and noise_dir.is_dir() else None
        babi_dir = _resolve(config.babi_dir)
        babi_files = _babi_files(babi_dir, config.tasks) if babi_dir and babi_dir.is_dir() else None
        common = dict(tasks=config.tasks, noise=noise, tokenizer=self.tokenizer, needle_probability=config.needle_probability)
        self.train_tasks = TaskGenerator(babi_files=babi_files, split="train", val_fraction=config.babi_val_fraction, seed=self.dist.seed(config.seed), generated_fraction=config.generated_fraction, **common)
        self.val_tasks = TaskGenerator(babi_files=babi_files, split="val", val_fraction=config.babi_val_fraction, seed=config.seed + 1, **common)

        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2 and "memory" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.dim() >= 2 and "memory" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(0.9, 0.98), eps=1e-8,
        )
        self.step = 0
        self.stage_index = 0
        self.history: list[dict] = []
        self.minutes = 0.0  # wall-clock training minutes before this process (resumed runs)
        self._fit_start: float | None = None
        self._qa_cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        self._resume()
        self.train_model = self.dist.wrap(self.model)  # what train_step runs; self.model is what is saved

    def qa_ids(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """Token ids of a question prompt and its answer (+ eos), as samples have them."""
        key = (question, answer)
        if key not in self._qa_cache:
            tok = self.tokenizer
            self._qa_cache[key] = (tok.encode(QUESTION_TEMPLATE.format(question=question)), tok.encode(ANSWER_TEMPLATE.format(answer=answer)) + [tok.eos_id])
        return self._qa_cache[key]

    # ------------------------------------------------------------------ schedule

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        horizon = c.max_steps if c.decay_steps is None else c.decay_steps
        progress = min(1.0, (step - c.warmup_steps) / max(1, horizon - c.warmup_steps))
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    @property
    def stage(self) -> int:
        return self.config.curriculum[self.stage_index]

    @property
    def promote_at(self) -> float:
        return _per_stage(self.config.promote_at, self.stage_index)

    @property
    def batch_size(self) -> int:
        return _per_stage(self.config.batch_size, self.stage_index)

    def batch_samples(self) -> tuple[list[TaskSample], list[int]]:
        """A training batch (this process's share of it) and each sample's stage: half the
        current stage, half earlier ones."""
        c = self.config
        size = self.dist.share(self.batch_size)
        stages = [
            self.stage if i < (size + 1) // 2 or self.stage_index == 0 else c.curriculum[self.rng.randrange(self.stage_index + 1)]
            for i in range(size)
        ]
        return [draw_sample(self.train_tasks, stage, c.segment_size, self.rng) for stage in stages], stages

    # ------------------------------------------------------------------ steps

    def _autocast(self):
        enabled = self.config.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def anchor_samples(self) -> tuple[list[TaskSample], list[int]]:
        """`anchor_batch` samples of the passed memoryless stages (see `anchor_batch`), or none."""
        c = self.config
        passed = [stage for stage in c.curriculum[: self.stage_index] if stage <= 0]
        size = self.dist.share(c.anchor_batch) if passed else 0
        stages = [passed[i % len(passed)] for i in range(size)]
        return [draw_sample(self.train_tasks, stage, c.segment_size, self.rng) for stage in stages], stages

    def _forward_backward(self, samples: list[TaskSample], stages: list[int]) -> tuple[RMTOutput, int]:
        """One pass over some samples (with their extra turns and probes); gradients accumulate."""
        c = self.config
        k = c.probe_questions
        turns = [direct_turns(s, k, self.qa_ids, self.rng) if stage < 0 and k else [] for s, stage in zip(samples, stages)]
        if any(turns):  # the facts moved into the first turn
            samples = [replace(s, question_ids=self.qa_ids(s.question, s.answer)[0]) if t else s for s, t in zip(samples, turns)]
        batch = collate(samples, self.device, turns)
        questions = [probe_questions(s, c.segment_size, k, self.qa_ids, self.rng) if stage >= 0 and k else [] for s, stage in zip(samples, stages)]
        probes = collate_probes(questions, self.device)
        with self._autocast():
            out = self.train_model(**batch, gradient_checkpointing=c.gradient_checkpointing, lm_weight=c.lm_weight, probes=probes, keep_weight=c.keep_weight)
        out.loss.backward()
        tokens = sum(len(s.context_ids) for s in samples) + _count(batch["query_ids"], batch["query_mask"])
        return out, tokens + sum(_count(p.query_ids, p.query_mask) for p in probes)

    def train_step(self) -> dict:
        c = self.config
        self.model.train()
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        out, tokens = self._forward_backward(*self.batch_samples())
        info = {"loss": float(out.loss.detach()), "acc": float(out.answer_correct.float().mean()), "lr": lr}
        if out.probe_correct is not None and out.probe_correct.numel():
            info["probe_acc"] = float(out.probe_correct.float().mean())
        anchors, anchor_stages = self.anchor_samples()
        if anchors:
            anchor_out, anchor_tokens = self._forward_backward(anchors, anchor_stages)
            info["anchor_acc"], tokens = float(anchor_out.answer_correct.float().mean()), tokens + anchor_tokens
        info["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.clip))
        self.optimizer.step()
        self.step += 1
        return {**info, "tokens": tokens}

    @torch.no_grad()
    def evaluate(self, stage: int | None = None, samples: int | None = None) -> float:
        """Teacher-forced exact match on held-out samples at the given stage's length."""
        c = self.config
        stage = self.stage if stage is None else stage
        rng = random.Random(c.seed + 1000 + stage)
        self.val_tasks.reseed(c.seed + 2000 + stage)
        self.model.eval()
        correct = total = 0
        n = samples or c.eval_samples
        for start in range(0, n, self.batch_size):
            chunk = [draw_sample(self.val_tasks, stage, c.segment_size, rng) for _ in range(min(self.batch_size, n - start))]
            with self._autocast():
                out = self.model(**collate(chunk, self.device))
            correct += int(out.answer_correct.sum())
            total += len(chunk)
        self.model.train()
        return correct / max(1, total)

    # ------------------------------------------------------------------ checkpoints

    @property
    def elapsed_minutes(self) -> float:
        """Wall-clock minutes of training so far, across resumes."""
        return self.minutes + (0.0 if self._fit_start is None else (time.time() - self._fit_start) / 60)

    def save(self, final: bool = False) -> None:
        """Atomically write a resumable checkpoint (and, when final, the weights alone); rank 0 only."""
        if not self.dist.is_main:
            return
        ckpt = self.out / "checkpoint"
        tmp = self.out / "checkpoint.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(tmp)
        self.tokenizer.save(tmp)
        tensors, meta = _optimizer_to_flat(self.optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {"step": self.step, "stage_index": self.stage_index, "rng": _rng_state(self.rng), "optimizer": meta, "history": self.history[-50:], "minutes": self.elapsed_minutes, "config": asdict(self.config)}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        if ckpt.exists():
            old = self.out / "checkpoint.old"
            ckpt.replace(old)
            tmp.replace(ckpt)
            _rmtree(old)
        else:
            tmp.replace(ckpt)
        if final:
            self.model.save_pretrained(self.out / "final")
            self.tokenizer.save(self.out / "final")

    def _resume(self) -> None:
        ckpt = self.out / "checkpoint"
        if not (ckpt / "trainer_state.json").is_file():
            return
        state = json.loads((ckpt / "trainer_state.json").read_text())
        loaded = load_rmt(ckpt, device=self.device)
        self.model.load_state_dict(loaded.state_dict())
        _optimizer_from_flat(self.optimizer, load_file(str(ckpt / "optimizer.safetensors")), state["optimizer"])
        self.step, self.stage_index = state["step"], state["stage_index"]
        self.rng.setstate(_rng_from_json(state["rng"]))  # rank 0's
        if not self.dist.is_main:
            self.rng.seed(self.dist.seed(self.config.seed) + 7919 * self.step)
        self.history = state.get("history", [])
        self.minutes = state.get("minutes", 0.0)
        self.train_tasks.reseed(self.dist.seed(self.config.seed) + 7919 * self.step)

    def log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        record = {"time": round(time.time(), 1), **record}
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.on_log:
            self.on_log(record)

    # ------------------------------------------------------------------ loop

    def fit(self, progress: bool = True) -> dict:
        from tqdm import tqdm

        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.json").write_text(json.dumps(asdict(c), indent=2))
        start = self._fit_start = time.time()
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not progress or not self.dist.is_main, dynamic_ncols=True)
        window: list[dict] = []
        scheduled = {step: stage for step, stage in c.stage_at_step}
        while self.step < c.max_steps:
            if self.dist.from_main(c.max_minutes is not None and time.time() - start > 60 * c.max_minutes):
                break
            t0 = time.time()
            info = self.train_step()
            info["seconds"] = time.time() - t0
            window.append(info)
            bar.update(1)
            if self.step % c.eval_every == 0:
                acc = self.evaluate()
                train_seconds = sum(w["seconds"] for w in window)
                record = {
                    "step": self.step, "stage": self.stage, "val_acc": acc,
                    "loss": sum(w["loss"] for w in window) / len(window),
                    "train_acc": sum(w["acc"] for w in window) / len(window),
                    "lr": info["lr"], "tokens_per_s": sum(w["tokens"] for w in window) / train_seconds,
                    "steps_per_min": 60 * len(window) / train_seconds,
                    "minutes": round(self.elapsed_minutes, 2),
                }
                for key in ("probe_acc", "anchor_acc"):
                    seen = [w[key] for w in window if key in w]
                    if seen:
                        record[f"train_{key}"] = sum(seen) / len(seen)
                window = []
                self.history.append(record)
                promoted = self.dist.from_main(acc >= self.promote_at and self.stage_index + 1 < len(c.curriculum))
                if promoted:
                    self.stage_index += 1
                record["promoted_to"] = self.stage if promoted else None
                if self.step in scheduled:
                    record["scheduled_to"] = scheduled[self.step]
                self.log(record)
                bar.set_postfix(stage=record["stage"], loss=f"{record['loss']:.3f}", val=f"{acc:.2f}")
            if self.step in scheduled:
                self.stage_index = c.curriculum.index(scheduled[self.step])
            if self.step % c.save_every == 0:
                self.save()
        self.save(final=True)
        bar.close()
        self.dist.close()
        return {"step": self.step, "stage": self.stage, "output": str(self.out / "final")}


def _per_stage(setting: float | list, stage_index: int):
    """A setting given once, or per curriculum stage."""
    return setting[stage_index] if isinstance(setting, list) else setting


def _count(ids: torch.Tensor, mask: torch.Tensor | None) -> int:
    """Real (unpadded) tokens of a right-padded batch."""
    return ids.numel() if mask is None else int(mask.sum())


def _babi_files(directory: Path, tasks: list[str]) -> dict[str, Path]:
    files = {}
    for task in tasks:
        if task.startswith("qa"):
            found = sorted(directory.glob(f"{task}_*train.txt"))
            if found:
                files[task] = found[0]
    return files


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_json(data: list) -> tuple:
    return (data[0], tuple(data[1]), data[2])


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
