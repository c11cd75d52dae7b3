"""Associative memory per decoder layer (ARMT, Rodkin et al. 2024), beside the memory tokens.

The memory tokens hand a segment's facts to the next one through attention, which averages:
measured on the shipped reader, each digit of an access code comes back right only ~88% of
the time even straight after the segment that stated it. An associative memory stores
key -> value pairs instead: per layer a matrix A (P, d) that maps a key's features to a value.

* write (after a segment): the layer's output h at each writing position t (RMS-normalised,
  like every sublayer's input) gives a key
  k_t = phi(W_k h_t), a value v_t = W_v h_t and a strength b_t = sigmoid(w_b h_t). The delta
  rule replaces what A returns for k_t instead of adding to it (DeltaNet, Schlag et al. 2021;
  ARMT): A <- A + b_t k_t (v_t - A^T k_t)^T, position after position. With unit-length keys
  and b in (0, 1) each step is a contraction, so the memory cannot blow up however much it
  reads. The T steps of a segment are computed at once, exactly: with U the rows
  u_t = b_t (v_t - A_t-1^T k_t), A_T = A_0 + K^T U and (I + diag(b) tril(K K^T, -1)) U =
  diag(b) (V - K A_0), one triangular solve per segment and layer instead of a loop.
* read (at the input of the layer, every position of every later segment and of the
  question): x <- x + W_o A^T phi(W_q rms(x)). W_o starts at zero: a reader that gains the
  associative memory starts out answering exactly as it did, and learns to use it.

phi is DPFP (deterministic parameter-free projection, Schlag et al. 2021) of order NU,
normalised to unit length: sparse, non-negative features in which different keys are close
to orthogonal, so a key that was never written reads back (nearly) nothing.

Writing positions are the memory tokens' write positions ("memory", as in ARMT: the memory
tokens choose what to store) or every real token of the segment ("tokens": each token can
store itself, e.g. a digit under the key of its context, and the strength b learns which).

The state travels with the memory vectors as extra rows of width d: A in P rows per layer
(see `LayerMemories.state_rows`).
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NU = 3
WRITE_SOURCES = ("memory", "tokens")
# Initial write strength: memory tokens are few and chosen, so they start half open; every
# token of a segment writing at once would flood the memory, so they start nearly closed.
STRENGTH_BIAS = {"memory": 0.0, "tokens": -2.0}


def dpfp(x: Tensor, nu: int = NU) -> Tensor:
    """(..., k) -> (..., 2 k nu): products of the ReLU features with their rolled copies, unit length."""
    r = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
    features = torch.cat([r * r.roll(shifts=i, dims=-1) for i in range(1, nu + 1)], dim=-1)
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def _rms(x: Tensor) -> Tensor:
    """x at unit root-mean-square per position. Keys, values and queries come from the
    residual stream, whose scale differs hugely between positions (memory tokens carry the
    massive activations of attention sinks: measured, their values made A ~100x larger than
    the tokens' and the reader fell from 78% to 6% in 100 steps)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)


def feature_size(key_size: int) -> int:
    """Length of phi's features for keys of `key_size` (rows of A per layer)."""
    return 2 * key_size * NU


class AssociativeMemory(nn.Module):
    """One layer's key -> value store: `read` adds to the layer's input, `write` updates A."""

    def __init__(self, width: int, key_size: int, write_source: str, dtype: torch.dtype = torch.float32):
        super().__init__()
        if write_source not in WRITE_SOURCES:
            raise ValueError(f"associative write source must be one of {', '.join(WRITE_SOURCES)}, not {write_source!r}")
        self.query = nn.Linear(width, key_size, bias=False, dtype=dtype)
        self.key = nn.Linear(width, key_size, bias=False, dtype=dtype)
        self.value = nn.Linear(width, width, bias=False, dtype=dtype)
        self.strength = nn.Linear(width, 1, dtype=dtype)
        self.out = nn.Linear(width, width, bias=False, dtype=dtype)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.strength.bias, STRENGTH_BIAS[write_source])

    def read(self, x: Tensor, matrix: Tensor) -> Tensor:
        """x (B, T, d), matrix (B, P, d) -> x plus what the memory returns for x."""
        found = dpfp(self.query(_rms(x))).to(matrix.dtype) @ matrix
        return x + self.out(found.to(x.dtype))

    def write(self, h: Tensor, weight: Tensor | None, matrix: Tensor) -> Tensor:
        """The matrix after the delta rule wrote h (B, T, d) position after position; weight
        (B, T) is 1 where a position writes and 0 where it does not (padding), None when all write."""
        h = _rms(h)
        k = dpfp(self.key(h)).to(matrix.dtype)
        v = self.value(h).to(matrix.dtype)
        b = torch.sigmoid(self.strength(h)).to(matrix.dtype)  # (B, T, 1)
        if weight is not None:
            b = b * weight.to(b.dtype).unsqueeze(-1)
        steps = torch.eye(k.shape[1], dtype=k.dtype, device=k.device) + b * torch.tril(k @ k.transpose(1, 2), diagonal=-1)
        updates = torch.linalg.solve_triangular(steps, b * (v - k @ matrix), upper=False, unitriangular=True)
        return matrix + k.transpose(1, 2) @ updates


def decoder_layers(base_model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a Hugging Face base model (Llama/Qwen2 `layers`, GPT-2 `h`)."""
    for name in ("layers", "h"):
        layers = getattr(base_model, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"cannot find the decoder layers of {type(base_model).__name__} for an associative memory")


class LayerMemories(nn.Module):
    """The associative memories of all decoder layers, hooked into the backbone's layers.

    `active` arms the hooks for one backbone call; outside it they do nothing.
    The hooks are bound methods of this module, so a deep copy of the cell (int8 reading)
    hooks its own copy.
    """

    def __init__(self, base_model: nn.Module, width: int, key_size: int, write_source: str, dtype: torch.dtype):
        super().__init__()
        layers = decoder_layers(base_model)
        self.write_source = write_source
        self.features = feature_size(key_size)
        self.width = width
        self.memories = nn.ModuleList(AssociativeMemory(width, key_size, write_source, dtype) for _ in layers)
        self._state: Tensor | None = None
        self._write: slice | None = None
        self._outputs: list[Tensor] = []
        for index, layer in enumerate(layers):
            layer.register_forward_pre_hook(partial(self._read_hook, index), with_kwargs=True)
            layer.register_forward_hook(partial(self._write_hook, index))

    @property
    def state_rows(self) -> int:
        return len(self.memories) * self.features

    def empty_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.zeros(batch, self.state_rows, self.width, device=device, dtype=dtype)

    def _matrix(self, state: Tensor, index: int) -> Tensor:
        return state[:, index * self.features : (index + 1) * self.features]

    def _read_hook(self, index: int, module: nn.Module, args: tuple, kwargs: dict):
        if self._state is None:
            return None
        matrix = self._matrix(self._state, index)
        if args:
            return (self.memories[index].read(args[0], matrix), *args[1:]), kwargs
        return args, dict(kwargs, hidden_states=self.memories[index].read(kwargs["hidden_states"], matrix))

    def _write_hook(self, index: int, module: nn.Module, args: tuple, output) -> None:
        if self._write is not None:
            hidden = output[0] if isinstance(output, tuple) else output
            self._outputs.append(hidden[:, self._write])

    @contextmanager
    def active(self, state: Tensor, write_positions: slice | None = None) -> Iterator[list[Tensor]]:
        """Arm the hooks for one backbone call: every layer's input reads from `state`
        (B, state_rows, d); with `write_positions` each layer's output there is appended to
        the yielded list (one tensor per layer), for `written_state`."""
        outputs: list[Tensor] = []
        self._state, self._write, self._outputs = state, write_positions, outputs
        try:
            yield outputs
        finally:
            self._state, self._write, self._outputs = None, None, []

    def written_state(self, state: Tensor, outputs: list[Tensor], weight: Tensor | None) -> Tensor:
        """The state after each layer writes its kept outputs (B, T, d); weight (B, T) is 1
        where a position writes (real tokens) and 0 elsewhere, None when all write."""
        pairs = zip(self.memories, outputs, strict=True)
        return torch.cat([memory.write(hidden, weight, self._matrix(state, index)) for index, (memory, hidden) in enumerate(pairs)], dim=1)
