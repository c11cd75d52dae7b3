"""Recurrent Memory Transformer (Bulatov et al. 2022; BABILong recipe) over any causal LM.

Two parts, as in the reference implementation:

* `MemoryCell` runs ONE segment: it feeds `[memory (read) | segment | memory (write)]` to the
  backbone and returns the segment's hidden states and the new memory: the last layer's
  output at the write positions, either as is ("replace") or mixed into the old memory by a
  learned gate ("gated", see `RMTConfig.memory_update`). Optionally every decoder layer also
  reads and writes an associative key -> value memory (model/associative.py), carried as
  extra rows of the same state.
* `RecurrentMemoryTransformer` loops the cell over segments: reading a corpus (memory after
  every segment, LM head skipped), training with (truncated) backpropagation through time,
  answering a question from a memory with a KV cache, and scoring answers under many memories.

Positions. Every segment is a fresh sequence for the backbone: read memory takes positions
0..M-1, the segment's n real tokens M..M+n-1 and the write memory M+n..M+n+M-1, so write
memory always sits right after the last real token (also when a batch is right-padded).
Rotary backbones (Llama, Qwen2, SmolLM2) thus see relative distances within one segment only;
absolute-position backbones (GPT-2) need S + 2M <= n_positions. A question is answered as a
final segment `[memory | question | answer...]` with positions 0.. and no write memory.
"""
from __future__ import annotations

import json
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from model.associative import LayerMemories
from model.config import RMTConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
IGNORE_INDEX = -100
GATE_BIAS = -1.0
SHIFT_INIT = 0.3


class MemoryCell(nn.Module):
    """One recurrent step: read memory, run the backbone over a segment, write memory."""

    def __init__(self, backbone: nn.Module, num_mem_tokens: int, memory_update: str = "replace", token_shift: int = 0, associative_keys: int = 0, associative_write: str = "memory"):
        super().__init__()
        self.backbone = backbone
        embeddings = backbone.get_input_embeddings().weight
        scale = embeddings.detach().float().std().item()
        # Learned initial memory, at the scale of the backbone's token embeddings.
        self.memory = nn.Parameter(torch.randn(num_mem_tokens, embeddings.shape[1], dtype=embeddings.dtype) * scale)
        # The last layer's (normalised) output has unit scale per dimension; fed back as is, it
        # dwarfs what attention adds at the write positions of the next segment and the memory
        # collapses to a near-constant. A learned scalar keeps written memory at embedding scale.
        self.write_scale = nn.Parameter(torch.tensor(scale, dtype=embeddings.dtype))
        self.gate: nn.Linear | None = None
        if memory_update == "gated":
            # g = sigmoid(W h + b) per memory vector and dimension, from the write position's
            # output h. W starts at 0 and b at GATE_BIAS: every segment first keeps ~73% of the
            # old memory, and the gate learns when to open.
            width = embeddings.shape[1]
            self.gate = nn.Linear(width, width, dtype=embeddings.dtype)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, GATE_BIAS)
        # token_shift: weights of the K previous embeddings mixed into each token's (see RMTConfig).
        # Not zero at init: matching a question's name to a fact needs the name in the fact's
        # keys AND query/key weights that compare names; from zero each waits for the other (a
        # saddle: qa1 stayed at ~50% for 800 steps), from SHIFT_INIT both learn at once (98%
        # after 200 steps, measured; see assets/default/MODEL_CARD.md).
        self.shift = nn.Parameter(torch.full((token_shift, embeddings.shape[1]), SHIFT_INIT, dtype=embeddings.dtype)) if token_shift else None
        self.associative: LayerMemories | None = None
        if associative_keys:
            self.add_associative_memory(associative_keys, associative_write)

    def add_associative_memory(self, key_size: int, write_source: str) -> None:
        """Give every decoder layer an associative memory (see model/associative.py). Its
        read output starts at zero, so a trained reader answers as before until it learns to use it."""
        embeddings = self.backbone.get_input_embeddings().weight
        self.associative = LayerMemories(self.backbone.base_model, embeddings.shape[1], key_size, write_source, embeddings.dtype).to(embeddings.device)

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings (B, L, d), each plus its learned mix of the K before it (token_shift)."""
        tokens = self.backbone.get_input_embeddings()(input_ids)
        if self.shift is None:
            return tokens
        length, k = tokens.shape[1], self.shift.shape[0]
        padded = F.pad(tokens, (0, 0, k, 0))
        return tokens + sum(self.shift[j - 1] * padded[:, k - j : k - j + length] for j in range(1, k + 1))

    @property
    def num_mem_tokens(self) -> int:
        return self.memory.shape[0]

    @property
    def state_rows(self) -> int:
        """Rows of the recurrent state (state_rows, d): the M memory vectors, then the
        associative memories' matrices when there are any."""
        return self.num_mem_tokens + (0 if self.associative is None else self.associative.state_rows)

    def initial_state(self, batch_size: int) -> Tensor:
        memory = self.memory.unsqueeze(0).expand(batch_size, -1, -1)
        if self.associative is None:
            return memory
        return torch.cat([memory, self.associative.empty_state(batch_size, memory.device, memory.dtype)], dim=1)

    @contextmanager
    def reading(self, memory: Tensor) -> Iterator[Tensor]:
        """Context for running the backbone on `[memory vectors | tokens]` outside `forward`
        (decoding with a KV cache): yields the memory vectors (B, M, d) and, while it lasts,
        lets every layer read its associative memory from `memory` (B, state_rows, d)."""
        if self.associative is None:
            yield memory
            return
        with self.associative.active(memory[:, self.num_mem_tokens :]):
            yield memory[:, : self.num_mem_tokens]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None, memory: Tensor, write: bool = True) -> tuple[Tensor, Tensor | None]:
        """input_ids (B, L) right-padded, attention_mask (B, L) or None when all real, memory
        (B, state_rows, d): the M memory vectors, then the associative memory if any.

        Returns the hidden states at the L segment positions and the new memory (B, state_rows,
        d), or None when `write` is False (the answering segment).
        """
        batch, length = input_ids.shape
        mem = self.num_mem_tokens
        device = input_ids.device
        tokens = self.embed(input_ids)
        state = memory.to(tokens.dtype)
        memory, associative = state[:, :mem], state[:, mem:]
        parts = [memory, tokens, memory] if write else [memory, tokens]
        embeds = torch.cat(parts, dim=1)

        if attention_mask is None:
            mask = None
            positions = torch.arange(embeds.shape[1], device=device).expand(batch, -1)
        else:
            attention_mask = attention_mask.to(device=device, dtype=torch.long)
            ones = torch.ones(batch, mem, dtype=torch.long, device=device)
            mask = torch.cat([ones, attention_mask, ones] if write else [ones, attention_mask], dim=1)
            read_and_segment = torch.arange(mem + length, device=device).expand(batch, -1)
            if write:
                real = attention_mask.sum(dim=1, keepdim=True)
                write_pos = mem + real + torch.arange(mem, device=device)
                positions = torch.cat([read_and_segment, write_pos], dim=1)
            else:
                positions = read_and_segment

        armed = nullcontext()
        if self.associative is not None:
            by_tokens = self.associative.write_source == "tokens"
            writing = None if not write else slice(mem, mem + length) if by_tokens else slice(mem + length, None)
            armed = self.associative.active(associative, writing)
        with armed as layer_outputs:
            hidden = self.backbone.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
        if not write:
            return hidden[:, mem : mem + length], None
        written = hidden[:, mem + length :]
        new_memory = written * self.write_scale
        if self.gate is not None:
            gate = torch.sigmoid(self.gate(written))
            new_memory = memory + gate * (new_memory - memory)
        if self.associative is not None:
            writers = attention_mask if by_tokens else None  # None: every position writes
            new_memory = torch.cat([new_memory, self.associative.written_state(associative, layer_outputs, writers)], dim=1)
        return hidden[:, mem : mem + length], new_memory


@dataclass
class Probe:
    """Questions answered from the memory after `after_segments` context segments.

    Per-segment state supervision: every write gets a direct gradient, and keeping what was
    written through segments that say nothing new is taught at every step, not only at the end.
    `rows` (Q,) picks the batch sample whose memory each question reads; queries and labels
    are shaped like `forward`'s (answer tokens labelled, IGNORE_INDEX elsewhere).
    """

    after_segments: int
    rows: Tensor
    query_ids: Tensor
    labels: Tensor
    query_mask: Tensor | None = None


@dataclass
class RMTOutput:
    loss: Tensor | None
    logits: Tensor  # (number of answer tokens, vocab): logits only where labels are set
    answer_correct: Tensor  # (B,) bool: every answer token is the argmax (teacher-forced exact match)
    memory: Tensor  # (B, M, d) memory the answer was decoded from
    probe_correct: Tensor | None = None  # (number of probe questions,) bool, when probes were given


class RecurrentMemoryTransformer(nn.Module):
    def __init__(self, config: RMTConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.cell = MemoryCell(backbone, config.num_mem_tokens, config.memory_update, config.token_shift, config.associative_keys, config.associative_write)
        # Set by `attach_adapter`: the pretrained backbone this model names instead of storing.
        self.adapter: dict | None = None
        self._int8: tuple[tuple[int, ...], nn.Module] | None = None  # (weight versions, cell): see read()

    def attach_adapter(self, backbone_source: dict, lora: dict | None = None) -> None:
        """Declare the backbone pretrained and shared (`backbone_source`: its name and the sha256
        of its file, see `model.backbones.BACKBONE_SOURCES`), and with `lora` (see
        `model.adapters.LoraSettings`) add fresh adapters and freeze it. From then on
        `save_pretrained` writes the memory and adapters only."""
        from model.adapters import LoraSettings, add_lora

        settings = None if lora is None else LoraSettings.from_dict(lora)
        if settings is not None:
            add_lora(self.backbone, settings)
        else:
            self.backbone.requires_grad_(False)
        self.adapter = {"backbone_source": dict(backbone_source), "lora": None if settings is None else settings.to_dict()}

    @property
    def backbone(self) -> nn.Module:
        return self.cell.backbone

    @property
    def device(self) -> torch.device:
        return self.cell.memory.device

    def widen_memory(self, num_mem_tokens: int, seed: int = 0) -> None:
        """Grow the memory to `num_mem_tokens` vectors, keeping the trained ones, so a trained
        reader gets more room for facts without starting over. Each new vector starts as a copy
        of a trained one (cycled) plus noise at 1% of the memory's scale: the copies read and
        write at other positions, so they part ways as training goes on."""
        old = self.cell.memory.data
        if num_mem_tokens < old.shape[0]:
            raise ValueError(f"memory can only grow: {old.shape[0]} vectors, asked for {num_mem_tokens}")
        generator = torch.Generator().manual_seed(seed)
        extra = num_mem_tokens - old.shape[0]
        copies = old[torch.arange(extra, device=old.device) % old.shape[0]]
        noise = torch.randn(copies.shape, generator=generator).to(old) * 0.01 * old.float().std().item()
        self.cell.memory = nn.Parameter(torch.cat([old, copies + noise]))
        self.config.num_mem_tokens = num_mem_tokens
        self._int8 = None

    def initial_memory(self, batch_size: int = 1) -> Tensor:
        """The state before any text, (B, state_rows, d): see `MemoryCell.state_rows`."""
        return self.cell.initial_state(batch_size)

    def add_associative_memory(self, key_size: int, write_source: str = "memory") -> None:
        """Give a (trained) reader an associative memory per layer; it answers as before until trained."""
        if self.cell.associative is not None:
            raise ValueError("this reader has an associative memory already")
        self.cell.add_associative_memory(key_size, write_source)
        self.config.associative_keys, self.config.associative_write = key_size, write_source
        self._int8 = None

    def segments(self, input_ids: Tensor, attention_mask: Tensor | None) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Consecutive segments of S tokens (the last may be shorter); masks dropped when all real."""
        size = self.config.segment_size
        for start in range(0, input_ids.shape[1], size):
            ids = input_ids[:, start : start + size]
            mask = None if attention_mask is None else attention_mask[:, start : start + size]
            if mask is not None and bool(mask.all()):
                mask = None
            yield ids, mask

    def _step(self, ids: Tensor, mask: Tensor | None, memory: Tensor, use_checkpoint: bool, cell: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        cell = self.cell if cell is None else cell
        if use_checkpoint and torch.is_grad_enabled():
            hidden, new = checkpoint(cell, ids, mask, memory, use_reentrant=False)
        else:
            hidden, new = cell(ids, mask, memory)
        if mask is not None:
            # A document that has ended keeps its memory: same result as reading it alone.
            has_tokens = mask.any(dim=1).view(-1, 1, 1)
            new = torch.where(has_tokens, new, memory.to(new.dtype))
        return hidden, new

    def _lm_loss(self, hidden: Tensor, ids: Tensor, mask: Tensor | None) -> Tensor | None:
        """Next-token loss over a context segment (an auxiliary signal for from-scratch readers)."""
        targets = ids[:, 1:]
        valid = torch.ones_like(targets, dtype=torch.bool) if mask is None else (mask[:, 1:] > 0)
        if not bool(valid.any()):
            return None
        logits = self.backbone.get_output_embeddings()(hidden[:, :-1][valid]).float()
        return F.cross_entropy(logits, targets[valid])

    @torch.no_grad()
    def read(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        memory: Tensor | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> Iterator[Tensor]:
        """Read tokens segment by segment and yield the memory (B, M, d) after every segment.

        Starts from `memory` when given (resume, append), else from the learned initial memory.
        The LM head is never applied while reading. Without `autocast_dtype`, reading on CPU
        follows the config's `cpu_reading`.
        """
        input_ids = input_ids.to(self.device)
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        if memory is None:
            memory = self.initial_memory(input_ids.shape[0])
        memory = memory.to(self.device, self.cell.memory.dtype)
        if memory.dim() == 2:
            memory = memory.unsqueeze(0)
        cell = self.cell
        if autocast_dtype is None and self.device.type == "cpu":
            autocast_dtype = torch.bfloat16 if self.config.cpu_reading == "bf16" else None
            cell = self._int8_cell() if self.config.cpu_reading == "int8" else cell
        for ids, mask in self.segments(input_ids, attention_mask):
            # Autocast per segment, never across a yield: the caller's code must not run under it.
            with torch.autocast(self.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                memory = self._step(ids, mask, memory, use_checkpoint=False, cell=cell)[1].to(self.cell.memory.dtype)
            yield memory

    def _int8_cell(self) -> nn.Module:
        """The cell dynamically quantised to int8 (see model/cpu_reading.py), made once and
        made again whenever a weight has changed since (every in-place update counts)."""
        from model.cpu_reading import int8_copy

        versions = tuple(p._version for p in self.parameters())
        if self._int8 is None or self._int8[0] != versions:
            self._int8 = (versions, int8_copy(self.cell))
        return self._int8[1]

    def forward(
        self,
        context_ids: Tensor,
        query_ids: Tensor,
        labels: Tensor,
        context_mask: Tensor | None = None,
        query_mask: Tensor | None = None,
        bptt_depth: int | None = None,
        gradient_checkpointing: bool = False,
        lm_weight: float = 0.0,
        probes: Sequence[Probe] = (),
        keep_weight: float = 0.0,
    ) -> RMTOutput:
        """Read the context, then predict the answer tokens of `[question answer]`.

        labels (B, Lq) hold the answer token ids at answer positions and IGNORE_INDEX elsewhere,
        so the loss is on answer tokens only. `bptt_depth` (k2, default from the config) counts
        the recurrent steps gradients flow through, the answering step included: earlier steps
        run under no_grad, so truncation costs no activation memory and cannot silently leak.
        `lm_weight` > 0 adds next-token loss on the context segments that get gradients.
        `probes` add questions answered from intermediate (or the final) memories; their answer
        tokens join the loss (probes after a step without gradients are skipped when training).
        `keep_weight` > 0 adds the mean relative change of the memory per context segment: a
        prior that a segment which says nothing the answers need leaves the memory as it was,
        so that what was written survives far more segments than training ever shows.
        """
        depth = self.config.bptt_depth if bptt_depth is None else bptt_depth
        segments = list(self.segments(context_ids, context_mask))
        num_steps = len(segments) + 1
        first_grad_step = 0 if depth is None else max(0, num_steps - depth)
        training = torch.is_grad_enabled()
        by_step: dict[int, list[Probe]] = {}
        for probe in probes:
            if not 0 <= probe.after_segments <= len(segments):
                raise ValueError(f"a probe after {probe.after_segments} segments, but the context has {len(segments)}")
            by_step.setdefault(probe.after_segments, []).append(probe)
        memory = self.initial_memory(context_ids.shape[0])
        lm_losses: list[Tensor | None] = []
        changes: list[Tensor] = []  # relative change of the memory per segment (keep_weight)
        answered: list[tuple[Tensor, Tensor]] = []  # (logits, targets) of every probe answered

        def answer_probes(step: int) -> None:
            for probe in by_step.get(step, ()):
                hidden, _ = self.cell(probe.query_ids, probe.query_mask, memory[probe.rows], write=False)
                answered.append(self._answer_logits(hidden, probe.labels))

        if not training or first_grad_step == 0:
            answer_probes(0)
        for index, (ids, mask) in enumerate(segments):
            with torch.set_grad_enabled(training and index >= first_grad_step):
                old = memory
                hidden, memory = self._step(ids, mask, memory, use_checkpoint=gradient_checkpointing)
                if lm_weight > 0 and torch.is_grad_enabled():
                    lm_losses.append(self._lm_loss(hidden, ids, mask))
                if keep_weight > 0 and torch.is_grad_enabled():
                    changes.append((memory - old).pow(2).mean() / old.detach().pow(2).mean().clamp_min(1e-12))
                if torch.is_grad_enabled() or not training:
                    answer_probes(index + 1)
        if 0 < len(segments) <= first_grad_step:
            memory = memory.detach()

        hidden, _ = self.cell(query_ids, query_mask, memory, write=False)
        logits, targets = self._answer_logits(hidden, labels)
        every_logits = torch.cat([logits, *(l for l, _ in answered)])
        every_target = torch.cat([t[t != IGNORE_INDEX] for t in [targets, *(t for _, t in answered)]])
        loss = F.cross_entropy(every_logits, every_target) if every_logits.shape[0] else None
        lm_losses = [x for x in lm_losses if x is not None]
        if loss is not None and lm_losses:
            loss = loss + lm_weight * torch.stack(lm_losses).mean()
        if loss is not None and changes:
            loss = loss + keep_weight * torch.stack(changes).mean()
        probe_correct = torch.cat([_rows_correct(l, t) for l, t in answered]) if answered else None
        return RMTOutput(loss=loss, logits=logits, answer_correct=_rows_correct(logits, targets), memory=memory, probe_correct=probe_correct)

    def _answer_logits(self, hidden: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Logits at the positions that predict labelled tokens (the LM head runs nowhere else)
        and, (B, L-1), the targets those positions predict (IGNORE_INDEX where unlabelled)."""
        targets = labels[:, 1:]
        logits = self.backbone.get_output_embeddings()(hidden[:, :-1][targets != IGNORE_INDEX]).float()
        return logits, targets

    # ----------------------------------------------------------------- answering

    @torch.no_grad()
    def generate(
        self,
        memory: Tensor,
        prompt_ids: Sequence[int],
        max_new_tokens: int = 32,
        eos_id: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        stop_loops: bool = True,
    ) -> Iterator[int]:
        """Decode an answer from one memory (M, d) after `prompt_ids`, yielding token ids as
        they are produced (greedy when temperature is 0, else nucleus sampling); stops at eos,
        which is not yielded, and (`stop_loops`) before a token that would close a loop (see
        `closes_loop`): a small reader that misses eos must not repeat a word to the token cap.
        Cost is independent of how much text the memory has read."""
        base = self.backbone.base_model
        head = self.backbone.get_output_embeddings()
        memory = memory.to(self.device, self.cell.memory.dtype).reshape(1, self.cell.state_rows, -1)
        ids = list(prompt_ids)
        window = 1 + (0 if self.cell.shift is None else self.cell.shift.shape[0])  # tokens one new embedding depends on
        prompt = torch.tensor([ids], dtype=torch.long, device=self.device)
        with self.cell.reading(memory) as vectors:
            embeds = torch.cat([vectors, self.cell.embed(prompt)], dim=1)
            length = embeds.shape[1]
            out = base(inputs_embeds=embeds, position_ids=torch.arange(length, device=self.device)[None], use_cache=True)
        produced: list[int] = []
        for _ in range(max_new_tokens):
            logits = head(out.last_hidden_state[:, -1]).float()[0]
            token = _pick(logits, temperature, top_p, generator)
            if eos_id is not None and token == eos_id:
                return
            produced.append(token)
            if stop_loops and closes_loop(produced):
                return
            yield token
            ids.append(token)
            recent = torch.tensor([ids[-window:]], device=self.device)
            with self.cell.reading(memory):  # never held across a yield: the caller's code runs between
                out = base(
                    inputs_embeds=self.cell.embed(recent)[:, -1:],
                    position_ids=torch.tensor([[length]], device=self.device),
                    cache=out.cache,
                    use_cache=True,
                )
            length += 1

    @torch.no_grad()
    def greedy_answers(self, memories: Tensor, prompts: Sequence[Sequence[int]], max_new_tokens: int = 16,
                       eos_id: int | None = None) -> list[tuple[list[int], float]]:
        """Greedy answers for many (memory, prompt) pairs at once, prompts of one length
        (memories (B, state_rows, d)): [(ids, mean log-prob of the ids and the eos after
        them)]. The same answers `generate` gives one by one (eos and loop stops per row), in
        one batched decode with a KV cache: re-reading tens of windows costs one pass."""
        if len({len(p) for p in prompts}) > 1:
            raise ValueError("greedy_answers needs prompts of one length (group them)")
        base = self.backbone.base_model
        head = self.backbone.get_output_embeddings()
        batch = len(prompts)
        memory = memories.to(self.device, self.cell.memory.dtype).reshape(batch, self.cell.state_rows, -1)
        ids = torch.tensor([list(p) for p in prompts], dtype=torch.long, device=self.device)
        window = 1 + (0 if self.cell.shift is None else self.cell.shift.shape[0])
        with self.cell.reading(memory) as vectors:
            embeds = torch.cat([vectors, self.cell.embed(ids)], dim=1)
            length = embeds.shape[1]
            out = base(inputs_embeds=embeds, position_ids=torch.arange(length, device=self.device).expand(batch, -1), use_cache=True)
            produced: list[list[int]] = [[] for _ in range(batch)]
            logprobs: list[list[float]] = [[] for _ in range(batch)]
            done = [False] * batch
            for step in range(max_new_tokens + 1):
                logp = head(out.last_hidden_state[:, -1]).float().log_softmax(-1)
                tokens = logp.argmax(-1).tolist()
                for row in range(batch):
                    if done[row]:
                        continue
                    token = tokens[row]
                    ends = (eos_id is not None and token == eos_id) or step == max_new_tokens or closes_loop(produced[row] + [token])
                    if ends:
                        logprobs[row].append(float(logp[row, eos_id]) if eos_id is not None else 0.0)
                        done[row] = True
                    else:
                        produced[row].append(token)
                        logprobs[row].append(float(logp[row, token]))
                if all(done):
                    break
                ids = torch.cat([ids, torch.tensor(tokens, device=self.device)[:, None]], dim=1)
                out = base(inputs_embeds=self.cell.embed(ids[:, -window:])[:, -1:],
                           position_ids=torch.full((batch, 1), length, device=self.device), cache=out.cache, use_cache=True)
                length += 1
        return [(row_ids, sum(row_lp) / len(row_lp)) for row_ids, row_lp in zip(produced, logprobs)]

    @torch.no_grad()
    def next_token_logits(self, memory: Tensor, prompt_ids: Sequence[int]) -> Tensor:
        """Logits (vocab,) of the token after `prompt_ids` under one memory (state_rows, d):
        the first answer token's distribution, for answers other than the greedy one."""
        memory = memory.to(self.device, self.cell.memory.dtype).reshape(1, self.cell.state_rows, -1)
        hidden, _ = self.cell(torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device), None, memory, write=False)
        return self.backbone.get_output_embeddings()(hidden[:, -1]).float()[0]

    @torch.no_grad()
    def score(self, memories: Tensor, prompt_ids: Sequence[int], target_ids: Sequence[int], batch_size: int = 32) -> Tensor:
        """Log-likelihood of `target_ids` after `prompt_ids` under each memory (N, M, d) -> (N,).

        Used to find where in a corpus an answer became likely (sources without retrieval).
        """
        if not prompt_ids:
            raise ValueError("score() needs a non-empty prompt: the first target is predicted from its last token")
        ids = torch.tensor(list(prompt_ids) + list(target_ids), dtype=torch.long, device=self.device)
        targets = ids[len(prompt_ids) :]
        head = self.backbone.get_output_embeddings()
        scores = []
        for start in range(0, memories.shape[0], batch_size):
            chunk = memories[start : start + batch_size].to(self.device, self.cell.memory.dtype)
            batch_ids = ids.expand(chunk.shape[0], -1)
            hidden, _ = self.cell(batch_ids, None, chunk, write=False)
            logits = head(hidden[:, len(prompt_ids) - 1 : -1]).float()
            logp = logits.log_softmax(-1).gather(-1, targets.expand(chunk.shape[0], -1).unsqueeze(-1)).squeeze(-1)
            scores.append(logp.sum(dim=1))
        return torch.cat(scores)

    # ----------------------------------------------------------------- persistence

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write `config.json` and `model.safetensors` (tied weights stored once)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        backbone_config = self.backbone.config.to_dict()
        backbone_config.pop("_name_or_path", None)  # where this machine loaded it from
        config = {"format": "rmtqa-rmt/1", "rmt": self.config.to_dict(), "backbone": backbone_config, **(self.adapter or {})}
        state = {}
        seen: set[tuple[int, tuple[int, ...]]] = set()
        for name, tensor in self.state_dict().items():
            if self.adapter is not None and not _in_adapter(name):
                continue
            key = (tensor.data_ptr(), tuple(tensor.shape))
            if key in seen:
                continue
            seen.add(key)
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            state[name] = tensor.detach().contiguous().cpu()
        tmp = directory / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt"})
        tmp.replace(directory / WEIGHTS_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone_for: Callable[[dict], nn.Module], dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> "RecurrentMemoryTransformer":
        """Load from safetensors only (never pickle); no remote code. `backbone_for(config)` gives
        the backbone the saved config names (this module knows no backbones:
        `model.backbones.load_rmt` passes `saved_backbone`)."""
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"no RMT model in {directory} (missing {CONFIG_FILE})")
        config = json.loads(config_path.read_text())
        if config.get("format") != "rmtqa-rmt/1":
            raise ValueError(f"{config_path} is not an rmtqa model config")
        source = config.get("backbone_source")
        model = cls(RMTConfig.from_dict(config["rmt"]), backbone_for(config))
        if source is not None:
            model.attach_adapter(source, config.get("lora"))
        state = load_file(str(directory / WEIGHTS_FILE))
        missing, unexpected = model.load_state_dict(state, strict=False)
        not_stored = {name for name in missing if _is_tied(model, name) or (source is not None and not _in_adapter(name))}
        if unexpected or set(missing) - not_stored:
            raise ValueError(f"weights in {directory} do not match the config (missing {sorted(set(missing) - not_stored)[:3]}, unexpected {unexpected[:3]})")
        model.backbone.tie_weights()
        return model.to(device=device, dtype=dtype).eval()


def _in_adapter(name: str) -> bool:
    """Whether an adapter directory stores this tensor: the memory cell's own and the LoRA ones."""
    from model.adapters import ADAPTER_MARK

    return not name.startswith("cell.backbone.") or ADAPTER_MARK in name


def _is_tied(model: nn.Module, name: str) -> bool:
    """True when parameter `name` shares storage with another parameter that was loaded."""
    params = dict(model.named_parameters(remove_duplicate=False))
    target = params.get(name)
    if target is None:
        return False
    return any(other is target for key, other in params.items() if key != name)


def _rows_correct(logits: Tensor, targets: Tensor) -> Tensor:
    """(Q,) bool: every labelled token of each row of `targets` (Q, L) is the argmax of its
    logits (`logits` holds the labelled positions only, in row order): teacher-forced exact match."""
    hits = torch.ones_like(targets, dtype=torch.bool)
    hits[targets != IGNORE_INDEX] = logits.argmax(dim=-1) == targets[targets != IGNORE_INDEX]
    return hits.all(dim=1)


def closes_loop(tokens: Sequence[int], longest_cycle: int = 8, min_copies: int = 3, min_span: int = 6) -> bool:
    """True when `tokens` end in `min_copies`+ back-to-back copies of one cycle of at most
    `longest_cycle` tokens that together span at least `min_span` tokens ("kitchen kitchen
    kitchen", "of the of the of the"). The span rule spares numbers: "1000" is three "0"s."""
    for width in range(1, longest_cycle + 1):
        copies = max(min_copies, -(-min_span // width))
        if len(tokens) < width * copies:
            continue
        tail = list(tokens[-width * copies :])
        if tail == tail[:width] * copies:
            return True
    return False


def _pick(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    probs = (logits / temperature).softmax(-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))
