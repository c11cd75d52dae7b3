"""The RMT's own settings, stored next to the backbone's config in `config.json`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class RMTConfig:
    """How the recurrent memory wraps a causal LM.

    num_mem_tokens: M memory vectors carried from segment to segment.
    segment_size:   S corpus tokens per segment; each step runs S + 2M positions.
    bptt_depth:     k2, the number of recurrent steps (counting the one that holds the loss)
                    gradients flow back through; None means full backpropagation through time.
    """

    num_mem_tokens: int = 16
    segment_size: int = 512
    bptt_depth: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RMTConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
