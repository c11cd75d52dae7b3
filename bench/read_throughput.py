"""Reading throughput: the RMT's `read()` against its plain backbone over the same segments.

Reading a segment of S tokens runs S + 2M positions through the backbone (M read and M write
memory vectors), so the best an RMT can do is S / (S + 2M) of the backbone's tokens per second;
the target is 90% of that. Both run in this process, interleaved, batch 1, without gradients.

    python -m bench.read_throughput [--quick] [--json] [--bf16] [--repeats N] [--threads N]

`--bf16` adds the same passes under bfloat16 autocast. They only pay off on CPUs with native
bf16 (AVX512-BF16, AMX); on an AVX2-only CPU they were 5x (tiny) to over 30x (GPT-2) slower.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import PretrainedConfig

from model.backbones import build_rmt, gpt2_small_config, tiny_llama_config
from model.rmt import RecurrentMemoryTransformer


@dataclass
class Case:
    name: str
    config: PretrainedConfig
    segment_size: int
    num_mem_tokens: int
    segments: int  # segments read per timed pass
    quick_segments: int


def cases() -> list[Case]:
    return [
        # the shipped reader: assets/default (configs/default.json), S=256, M=8
        Case("tiny_llama", tiny_llama_config(8192), 256, 8, segments=32, quick_segments=8),
        Case("gpt2_small", gpt2_small_config(), 512, 16, segments=4, quick_segments=1),
    ]


def autocast(dtype: torch.dtype | None):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext()


def readers(model: RecurrentMemoryTransformer, tokens: torch.Tensor, bf16: bool) -> dict[str, Callable[[], None]]:
    """The timed passes over `tokens`, by name; each reads every segment once."""
    backbone = model.backbone
    segments = tokens.split(model.config.segment_size, dim=1)

    def rmt(dtype: torch.dtype | None) -> Callable[[], None]:
        def run() -> None:
            for _ in model.read(tokens, autocast_dtype=dtype):
                pass

        return run

    def plain(module: torch.nn.Module, dtype: torch.dtype | None) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), autocast(dtype):
                for ids in segments:
                    module(input_ids=ids, use_cache=False)

        return run

    runs = {"rmt": rmt(None), "backbone": plain(backbone.base_model, None), "backbone_with_head": plain(backbone, None)}
    if bf16:
        runs.update(rmt_bf16=rmt(torch.bfloat16), backbone_bf16=plain(backbone.base_model, torch.bfloat16))
    return runs


def measure(case: Case, quick: bool, repeats: int, bf16: bool) -> dict:
    """Median tokens/s of every reader, timed round-robin so that load changes hit all alike."""
    model = build_rmt(case.config, num_mem_tokens=case.num_mem_tokens, segment_size=case.segment_size, seed=0).eval()
    count = (case.quick_segments if quick else case.segments) * case.segment_size
    tokens = torch.randint(0, case.config.vocab_size, (1, count), generator=torch.Generator().manual_seed(0))
    runs = readers(model, tokens, bf16)
    for run in runs.values():  # warmup
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    speed = {f"{name}_tokens_per_s": round(count / statistics.median(times), 1) for name, times in seconds.items()}

    expected = case.segment_size / (case.segment_size + 2 * case.num_mem_tokens)
    ratio = speed["rmt_tokens_per_s"] / speed["backbone_tokens_per_s"]
    result = {
        "config": case.name,
        "params": sum(p.numel() for p in model.parameters()),
        "segment_size": case.segment_size,
        "num_mem_tokens": case.num_mem_tokens,
        "tokens": count,
        "repeats": repeats,
        "dtype": str(model.cell.memory.dtype).removeprefix("torch."),
        **{key: speed[key] for key in ("rmt_tokens_per_s", "backbone_tokens_per_s", "backbone_with_head_tokens_per_s")},
        "ratio": round(ratio, 3),
        "expected_ratio": round(expected, 3),
        "target": round(0.9 * expected, 3),
        "meets_target": ratio >= 0.9 * expected,
    }
    if bf16:
        result.update(
            rmt_bf16_tokens_per_s=speed["rmt_bf16_tokens_per_s"],
            backbone_bf16_tokens_per_s=speed["backbone_bf16_tokens_per_s"],
            bf16_ratio=round(speed["rmt_bf16_tokens_per_s"] / speed["backbone_bf16_tokens_per_s"], 3),
            bf16_speedup=round(speed["rmt_bf16_tokens_per_s"] / speed["rmt_tokens_per_s"], 3),
        )
    return result


def table(results: list[dict]) -> str:
    rows = [
        ("params", "params"),
        ("S / M / tokens", None),
        ("rmt read (tok/s)", "rmt_tokens_per_s"),
        ("backbone (tok/s)", "backbone_tokens_per_s"),
        ("backbone + head (tok/s)", "backbone_with_head_tokens_per_s"),
        ("ratio rmt/backbone", "ratio"),
        ("expected S/(S+2M)", "expected_ratio"),
        ("target (0.9 x expected)", "target"),
        ("meets target", "meets_target"),
        ("rmt bf16 (tok/s)", "rmt_bf16_tokens_per_s"),
        ("backbone bf16 (tok/s)", "backbone_bf16_tokens_per_s"),
        ("bf16 ratio", "bf16_ratio"),
        ("bf16 speedup of rmt", "bf16_speedup"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':{width}}" + "".join(f"{r['config']:>16}" for r in results)]
    for label, key in rows:
        if key is not None and key not in results[0]:
            continue
        cells = [f"{r['segment_size']}/{r['num_mem_tokens']}/{r['tokens']}" if key is None else str(r[key]) for r in results]
        lines.append(f"{label:{width}}" + "".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens per pass")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per reader (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    tiny, gpt2 = (measure(case, args.quick, args.repeats, args.bf16) for case in cases())
    threads = torch.get_num_threads()
    if args.json:
        print(json.dumps({**tiny, "threads": threads, "gpt2_small": gpt2}))
    else:
        print(f"read throughput, batch 1, {threads} torch threads, median of {args.repeats}")
        print(table([tiny, gpt2]))


if __name__ == "__main__":
    main()
