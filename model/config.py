"""The RMT's own settings, stored next to the backbone's config in `config.json`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from model.associative import WRITE_SOURCES
from model.cpu_reading import CPU_READINGS

MEMORY_UPDATES = ("replace", "gated")


@dataclass
class RMTConfig:
    """How the recurrent memory wraps a causal LM.

    num_mem_tokens: M memory vectors carried from segment to segment.
    segment_size:   S corpus tokens per segment; each step runs S + 2M positions.
    bptt_depth:     k2, the number of recurrent steps (counting the one that holds the loss)
                    gradients flow back through; None means full backpropagation through time.
    memory_update:  "replace": the written memory replaces the read one (the original RMT);
                    "gated": new = old + g * (written - old) with a learned per-dimension gate
                    g that starts mostly closed, so keeping the memory through text that says
                    nothing new is the default and writing is the learned exception.
    token_shift:    K > 0 adds to every token's embedding a learned per-channel mix of the K
                    embeddings before it in its segment (a causal depthwise convolution).
                    "Mary moved to the kitchen": the place's input then carries its actor, so
                    one attention layer can match a question's name to it; without it a small
                    model must first grow a two-layer circuit to bind them.
    associative_keys: K > 0 gives every decoder layer an associative key -> value memory with
                    K-dimensional keys (ARMT; see model/associative.py), carried beside the
                    memory vectors; 0 = none.
    associative_write: which positions write it: "memory" (the write memory tokens, as in ARMT)
                    or "tokens" (every real token of the segment).
    cpu_reading:    how `read` runs on CPU: "fp32", "bf16" (autocast) or "int8" (dynamically
                    quantised Linear layers); measured per model (see model/cpu_reading.py).
    """

    num_mem_tokens: int = 16
    segment_size: int = 512
    bptt_depth: int | None = None
    memory_update: str = "replace"
    token_shift: int = 0
    cpu_reading: str = "fp32"
    associative_keys: int = 0
    associative_write: str = "memory"

    def __post_init__(self) -> None:
        if self.memory_update not in MEMORY_UPDATES:
            raise ValueError(f"memory_update must be one of {', '.join(MEMORY_UPDATES)}, not {self.memory_update!r}")
        if self.cpu_reading not in CPU_READINGS:
            raise ValueError(f"cpu_reading must be one of {', '.join(CPU_READINGS)}, not {self.cpu_reading!r}")
        if self.associative_write not in WRITE_SOURCES:
            raise ValueError(f"associative_write must be one of {', '.join(WRITE_SOURCES)}, not {self.associative_write!r}")

    def to_dict(self) -> dict:
        """The settings; `cpu_reading` and the associative memory only when used, so a
        config.json (and so a model fingerprint) is the same as before they existed."""
        data = asdict(self)
        if data["cpu_reading"] == "fp32":
            del data["cpu_reading"]
        if not data["associative_keys"]:
            del data["associative_keys"], data["associative_write"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RMTConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
