"""Reading throughput: the RMT's `read()` against its plain backbone over the same segments.

Reading a segment of S tokens runs S + 2M positions through the backbone (M read and M write
memory vectors), so the best an RMT can do is S / (S + 2M) of the backbone's tokens per second;
the target is 90% of that. Both run in this process, interleaved, batch 1, without gradients.

    python -m bench.read_throughput [--quick] [--json] [--bf16] [--repeats N] [--threads N]
    python -m bench.read_throughput --smollm2 [--model DIR [--apply]] [--tokens N] [--samples K]

`--bf16` adds the same passes under bfloat16 autocast. They only pay off on CPUs with native
bf16 (AVX512-BF16, AMX); on an AVX2-only CPU they were 5x (tiny) to over 30x (GPT-2) slower.

`--smollm2` times reading with SmolLM2 (a fresh memory, or the reader in `--model DIR`) in each
CPU reading precision (`RMTConfig.cpu_reading`: fp32, bf16 autocast, dynamic int8) over the
same fixed document-fact samples, and decodes every answer in fp32 from the memory each one
read: a precision agrees when all its answers equal fp32's. The fastest that agrees is the
recommendation; `--apply` writes it into DIR's config (a new model fingerprint: memories read
in another precision are other memories).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import PretrainedConfig

from model.backbones import build_rmt, gpt2_small_config, load_rmt, load_smollm2, tiny_llama_config
from model.cpu_reading import CPU_READINGS
from model.rmt import CONFIG_FILE, RecurrentMemoryTransformer

BOOKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "books"


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


def smollm2_reader(model_dir: Path | None) -> tuple[RecurrentMemoryTransformer, object]:
    """The reader in `model_dir`, else a fresh memory (S=512, M=16, as configs/smollm2_gpu.json) on SmolLM2."""
    from model.tokenizer import HFTokenizer, load_tokenizer

    if model_dir is not None:
        return load_rmt(model_dir), load_tokenizer(model_dir)
    backbone, tokenizer = load_smollm2()
    return build_rmt(backbone, num_mem_tokens=16, segment_size=512, seed=0).eval(), HFTokenizer(tokenizer)


def measure_precisions(model: RecurrentMemoryTransformer, tokenizer, noise: Path, tokens: int, samples: int, repeats: int) -> dict:
    """Reading tokens/s (batch 1) and fp32 answer agreement of every CPU reading precision."""
    from model.evaluate import exact_match
    from model.tasks import NoiseSource, TaskGenerator

    generator = TaskGenerator(tokenizer, ["needle"], noise=NoiseSource.from_directory(noise), seed=0, needle_probability=1.0)
    fixed = [generator.sample(tokens) for _ in range(samples)]
    contexts = [torch.tensor([s.context_ids]) for s in fixed]
    answers: dict[str, list[list[int]]] = {}
    prepare: dict[str, float] = {}
    for mode in CPU_READINGS:  # warmup, the int8 copy made, and the answers
        model.config.cpu_reading = mode
        start = time.perf_counter()
        memories = [list(model.read(ids))[-1][0] for ids in contexts]
        prepare[mode] = time.perf_counter() - start
        answers[mode] = [list(model.generate(m, s.question_ids, max_new_tokens=8, eos_id=tokenizer.eos_id)) for m, s in zip(memories, fixed)]
    seconds: dict[str, list[float]] = {mode: [] for mode in CPU_READINGS}
    for _ in range(repeats):
        for mode in CPU_READINGS:
            model.config.cpu_reading = mode
            start = time.perf_counter()
            for ids in contexts:
                for _ in model.read(ids):
                    pass
            seconds[mode].append(time.perf_counter() - start)
    count = sum(len(s.context_ids) for s in fixed)
    result: dict = {"config": "smollm2", "segment_size": model.config.segment_size, "num_mem_tokens": model.config.num_mem_tokens, "tokens": count, "samples": samples, "repeats": repeats}
    for mode in CPU_READINGS:
        result[f"{mode}_tokens_per_s"] = round(count / statistics.median(seconds[mode]), 1)
        result[f"{mode}_agreement"] = sum(a == b for a, b in zip(answers[mode], answers["fp32"])) / samples
        result[f"{mode}_accuracy"] = sum(exact_match(tokenizer.decode(a), s.answer) for a, s in zip(answers[mode], fixed)) / samples
    result["int8_prepare_s"] = round(prepare["int8"] - prepare["fp32"], 2)
    agreeing = [mode for mode in CPU_READINGS if result[f"{mode}_agreement"] == 1.0]
    result["cpu_reading"] = max(agreeing, key=lambda mode: result[f"{mode}_tokens_per_s"])
    return result


def apply_cpu_reading(model_dir: Path, mode: str) -> None:
    """Write `mode` as the model directory's `rmt.cpu_reading`."""
    path = model_dir / CONFIG_FILE
    config = json.loads(path.read_text())
    config["rmt"]["cpu_reading"] = mode
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


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
    parser.add_argument("--smollm2", action="store_true", help="SmolLM2 reading in fp32, bf16 and int8, with answer agreement")
    parser.add_argument("--model", type=Path, metavar="DIR", help="with --smollm2: a SmolLM2 reader (default: a fresh memory)")
    parser.add_argument("--apply", action="store_true", help="with --model: store the recommended precision in DIR")
    parser.add_argument("--noise", type=Path, default=BOOKS, metavar="DIR", help="with --smollm2: .txt files the samples' text comes from")
    parser.add_argument("--tokens", type=int, default=4096, help="with --smollm2: tokens per sample (default 4096)")
    parser.add_argument("--samples", type=int, default=8, help="with --smollm2: fixed samples (default 8)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.apply and args.model is None:
        parser.error("--apply needs --model DIR")
    if args.smollm2:
        model, tokenizer = smollm2_reader(args.model)
        result = {**measure_precisions(model, tokenizer, args.noise, args.tokens, args.samples, args.repeats), "threads": torch.get_num_threads()}
        if args.apply:
            apply_cpu_reading(args.model, result["cpu_reading"])
        print(json.dumps(result) if args.json else "\n".join(f"{key:>22}  {value}" for key, value in result.items()))
        return

    tiny, gpt2 = (measure(case, args.quick, args.repeats, args.bf16) for case in cases())
    threads = torch.get_num_threads()
    if args.json:
        print(json.dumps({**tiny, "threads": threads, "gpt2_small": gpt2}))
    else:
        print(f"read throughput, batch 1, {threads} torch threads, median of {args.repeats}")
        print(table([tiny, gpt2]))


if __name__ == "__main__":
    main()
