"""Does reading scale linearly with flat memory, and does asking stay constant?

    python -m bench.scaling --json [--model DIR] [--sizes 16k,128k,1M] [--threads N]

One JSON line (with --json): {"rmt": [{"tokens", "seconds", "tokens_per_s", "peak_rss_mb",
"ask_seconds", "bytes_per_token", ...}, ...], "full_attention": [{"tokens", "seconds",
"tokens_per_s", "peak_rss_mb"}, ...], "full_attention_stopped", "crossover_tokens",
"checks", "model", ...}.

RMT rows: each size runs in a fresh process (so peak RSS is that size's), through the
product path: `CorpusService.ingest` of a text file of book text (../shared/data/books, all
.txt books in name order, repeated if needed, cut at a line to the size) into a new corpus,
then `ask` with sources. `seconds` covers the whole ingest (loading, tokenizing, reading,
saving states); `read_tokens_per_s` is the reading alone. Model loading is not timed.
`ask_seconds` is the median of three asks after a first one (which also loads the corpus's
document index; reported as `ask_first_seconds`); answers are capped at 16 new tokens.

Full attention: the same backbone reads the whole context as ONE sequence (no memory, no
segments, LM head skipped like the RMT's reading), for growing lengths, each in a fresh
process, until a forward takes longer than --full-time-limit seconds or the next length is
predicted to need more than --full-memory-limit-gb. Positions beyond the backbone's
max_position_embeddings are allowed by raising that limit in the benchmark process's copy of
the config: rotary embeddings extrapolate mechanically (the numbers are computed; a model
never trained that long would not use them well), which is all a speed and memory baseline
needs.

Other jobs on the same cores make wall times swing (x2-x4 on a busy 2-core machine; +-15%
from minute to minute even on a quiet shared VM), so every row also has `cpu_seconds`
(process CPU time; with --threads 1 that is the work itself, with more threads spin-waits
count too), the checks and the crossover come in wall-clock and CPU-time (`*_cpu`) forms,
and the largest run reports `read_seconds_by_eighth`: if reading is linear, its later
eighths take as long as its first (`checks.last_vs_first_eighths` ~ 1), whatever the
machine does between runs.
`crossover_tokens` is where full attention's time for a context exceeds the RMT's (the RMT
read rate at the largest size, times the length), interpolated between measured lengths (or
the first length measured if full attention is slower there already); `full_over_rmt`
gives the ratio at every measured length.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOOKS = REPO.parent / "shared" / "data" / "books"
QUESTIONS = ["Who is the captain of the ship?", "Where did they go after the ball?", "What did the letter say?", "Who wrote to his sister?"]


def parse_size(text: str) -> int:
    from model.tasks import parse_length

    return parse_length(text)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def default_model(given: str | None) -> tuple[Path, bool]:
    from app.paths import default_model_dir

    shipped = default_model_dir()
    if given:
        return Path(given).absolute(), Path(given).absolute() == shipped.absolute()
    if (shipped / "config.json").is_file():
        return shipped, True
    raise SystemExit(f"bench.scaling: no model at {shipped} yet; pass --model DIR")


def write_book_texts(model_dir: Path, sizes: list[int], books: Path, out: Path) -> dict[int, Path]:
    """Book text files of about `size` tokens each (cut at a line), from the .txt books."""
    from model.tasks import read_text
    from model.tokenizer import load_tokenizer
    from ingest.stream import split_lines
    from ingest.text import strip_gutenberg
    from ingest.tokenizers import batch_encoder

    encode = batch_encoder(load_tokenizer(model_dir))
    texts = sorted(books.glob("*.txt"))
    if not texts:
        raise SystemExit(f"bench.scaling: no .txt books in {books}")
    biggest = max(sizes)
    lines: list[str] = []
    counts: list[int] = []
    total = 0
    while total < biggest:
        for book in texts:
            text = read_text(book).replace("\r\n", "\n").replace("\r", "\n")
            # Each book without its Gutenberg licence: in one concatenated file, ingest would
            # (rightly, for one book) stop at the first book's END marker.
            text = "".join(block for block, _, _ in strip_gutenberg([(text, 1, 0)]))
            book_lines = split_lines(text)
            book_counts = [len(ids) for ids in encode(book_lines)]
            lines.extend(book_lines)
            counts.extend(book_counts)
            total += sum(book_counts)
            if total >= biggest:
                break
    files = {}
    for size in sizes:
        running, cut = 0, 0
        while cut < len(lines) and running < size:
            running += counts[cut]
            cut += 1
        path = out / f"book-{size}.txt"
        path.write_text("".join(lines[:cut]))
        files[size] = path
    return files


# --------------------------------------------------------------------------- children


def child_rmt(args: argparse.Namespace) -> dict:
    import torch

    import ingest.pipeline  # noqa: F401 - imports are not what is measured
    from app.service.corpus_service import CorpusService

    if args.threads:
        torch.set_num_threads(args.threads)
    service = CorpusService(args.home, args.model)
    service.load_model()
    marks: list[float] = []  # wall clock at every eighth of the segments read

    def progress(event: dict) -> None:
        if event["phase"] == "read":
            done, total = event["segments_read"], event["segments_to_read"]
            if done * 8 >= (len(marks) + 1) * total:
                marks.append(time.perf_counter())

    started, cpu = time.perf_counter(), time.process_time()
    report = service.ingest([args.file], "bench", progress=progress)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    eighths = [round(b - a, 3) for a, b in zip(marks, marks[1:])]
    first = service.ask("bench", QUESTIONS[0], max_new_tokens=16)
    asks, ask_cpu = [], []
    for question in QUESTIONS[1:]:
        cpu = time.process_time()
        asks.append(service.ask("bench", question, max_new_tokens=16))
        ask_cpu.append(time.process_time() - cpu)
    return {
        "tokens": report["tokens"],
        "seconds": round(seconds, 2),
        "tokens_per_s": round(report["tokens"] / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "ask_seconds": round(statistics.median(a["seconds"] for a in asks), 4),
        "bytes_per_token": report["bytes_per_token"],
        "segments": report["segments"],
        "read_tokens_per_s": report["tokens_per_s"],
        "cpu_seconds": round(cpu_seconds, 2),
        "ask_cpu_seconds": round(statistics.median(ask_cpu), 4),
        "ask_first_seconds": first["seconds"],
        "sources_found": len(first["sources"]),
        # Reading time of the 2nd..8th eighths of the corpus: equal when reading is linear
        # within one run (no growth with the amount already read).
        "read_seconds_by_eighth": eighths,
    }


def child_full(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from model.backbones import load_rmt
    from model.tokenizer import load_tokenizer
    from ingest.stream import encode_text

    if args.threads:
        torch.set_num_threads(args.threads)
    rmt = load_rmt(args.model)
    backbone = rmt.backbone
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if limit is not None and limit < args.length:
        backbone.config.max_position_embeddings = args.length  # rotary: extrapolated mechanically
    tokenizer = load_tokenizer(args.model)
    ids = np.asarray(encode_text(tokenizer, Path(args.file).read_text()), dtype=np.int64)
    while len(ids) < args.length:
        ids = np.concatenate([ids, ids])
    input_ids = torch.from_numpy(ids[: args.length])[None]
    base = backbone.base_model
    with torch.no_grad():
        base(input_ids=input_ids[:, :64], use_cache=False)  # warm-up
        started, cpu = time.perf_counter(), time.process_time()
        base(input_ids=input_ids, position_ids=torch.arange(args.length)[None], use_cache=False)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return {"tokens": args.length, "seconds": round(seconds, 3), "tokens_per_s": round(args.length / seconds, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "cpu_seconds": round(cpu_seconds, 3)}


def run_child(kind: str, extra: list[str], timeout: float) -> dict:
    command = [sys.executable, "-m", "bench.scaling", "--child", kind, *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"over the {timeout:.0f} s limit"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- parent


def crossover(rmt_rate: float, full: list[dict], key: str = "seconds") -> int | None:
    """The length from which on full attention stays slower than the RMT: log-log
    interpolation after the last measured length where it was not (short contexts cost
    about the same either way, so timing noise may flip the first few); the first length
    when full attention is slower everywhere, None when it never is."""
    ratios = [(row["tokens"], row[key] / (row["tokens"] / rmt_rate)) for row in full]  # > 1: the RMT is faster
    if not ratios or ratios[-1][1] <= 1:
        return None
    last_not_slower = max((i for i, (_, ratio) in enumerate(ratios) if ratio <= 1), default=None)
    if last_not_slower is None:
        return ratios[0][0]
    (l0, r0), (l1, r1) = ratios[last_not_slower], ratios[last_not_slower + 1]
    t = -math.log(r0) / (math.log(r1) - math.log(r0)) if r1 != r0 else 0.0
    return int(round(math.exp(math.log(l0) + t * (math.log(l1) - math.log(l0)))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--model", help="model directory (default: assets/default)")
    parser.add_argument("--sizes", default="16k,128k,1M", help="RMT corpus sizes in tokens (default 16k,128k,1M)")
    parser.add_argument("--full-start", default="512", help="first full-attention length (doubled until a limit)")
    parser.add_argument("--full-max", default="1M", help="longest full-attention length to try")
    parser.add_argument("--full-time-limit", type=float, default=60.0, help="stop full attention once a forward takes longer (s)")
    parser.add_argument("--full-memory-limit-gb", type=float, default=8.0, help="stop before a length predicted to need more (GB)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the children (default: torch's)")
    parser.add_argument("--books", type=Path, default=BOOKS)
    parser.add_argument("--child", choices=["rmt", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = child_rmt(args) if args.child == "rmt" else child_full(args)
        print(json.dumps(result))
        return 0

    started = time.perf_counter()
    model_dir, is_default = default_model(args.model)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    threads = ["--threads", str(args.threads)] if args.threads else []
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    with tempfile.TemporaryDirectory(prefix="rmtqa-bench-") as tmp:
        files = write_book_texts(model_dir, sizes, args.books, Path(tmp))
        rmt = []
        for size in sizes:
            row = run_child("rmt", ["--model", str(model_dir), "--file", str(files[size]), "--home", str(Path(tmp) / f"home-{size}"), *threads], timeout=3600)
            rmt.append({"size": size, **row})
            log(f"rmt {size:>9,}: {row}")
        full, stopped = [], None
        length, top = parse_size(args.full_start), parse_size(args.full_max)
        while length <= top:
            if full:
                last = full[-1]
                predicted_seconds = last["seconds"] * 4  # quadratic at worst
                growth = last["peak_rss_mb"] / full[-2]["peak_rss_mb"] if len(full) > 1 else 2.0
                predicted_gb = last["peak_rss_mb"] * min(4.0, max(growth, 1.0) ** 1.5) / 1024
                if last["seconds"] > args.full_time_limit:
                    stopped = f"time: {last['tokens']:,} tokens took {last['seconds']:.0f} s (> {args.full_time_limit:.0f} s)"
                    break
                if predicted_gb > args.full_memory_limit_gb:
                    stopped = f"memory: {length:,} tokens predicted to need ~{predicted_gb:.1f} GB (> {args.full_memory_limit_gb:g} GB)"
                    break
                if predicted_seconds > 2 * args.full_time_limit:  # keeps the whole benchmark to minutes
                    stopped = f"time: {length:,} tokens predicted to take ~{predicted_seconds:.0f} s (> 2 x {args.full_time_limit:.0f} s)"
                    break
            row = run_child("full", ["--model", str(model_dir), "--file", str(files[max(sizes)]), "--length", str(length), *threads], timeout=6 * args.full_time_limit + 120)
            if "error" in row:
                stopped = f"{length:,} tokens: {row['error']}"
                break
            full.append(row)
            log(f"full {length:>9,}: {row}")
            length *= 2
        else:
            stopped = f"reached --full-max ({top:,} tokens)"

    ok = [r for r in rmt if "error" not in r]
    checks: dict = {}
    if len(ok) >= 2:
        small, mid, big = ok[0], ok[-2], ok[-1]
        checks["time_ratio_vs_token_ratio"] = round((big["seconds"] / mid["seconds"]) / (big["tokens"] / mid["tokens"]), 3)  # target 0.9..1.1
        checks["read_rate_ratio"] = round(big["read_tokens_per_s"] / mid["read_tokens_per_s"], 3) if big.get("read_tokens_per_s") and mid.get("read_tokens_per_s") else None
        checks["rss_ratio"] = round(big["peak_rss_mb"] / mid["peak_rss_mb"], 3)  # target <= 1.1
        checks["ask_ratio"] = round(big["ask_seconds"] / small["ask_seconds"], 3)  # target <= 1.2
        checks["cpu_time_ratio_vs_token_ratio"] = round((big["cpu_seconds"] / mid["cpu_seconds"]) / (big["tokens"] / mid["tokens"]), 3)
        checks["ask_cpu_ratio"] = round(big["ask_cpu_seconds"] / small["ask_cpu_seconds"], 3)
        by_eighth = big.get("read_seconds_by_eighth") or []
        if len(by_eighth) >= 4:
            # Within the largest run: the last eighths vs the first ones (no growth = linear).
            checks["last_vs_first_eighths"] = round(sum(by_eighth[-3:]) / sum(by_eighth[:3]), 3)
        checks["linear"] = abs(checks["time_ratio_vs_token_ratio"] - 1) <= 0.10
        checks["linear_cpu"] = abs(checks["cpu_time_ratio_vs_token_ratio"] - 1) <= 0.10
        checks["flat_rss"] = checks["rss_ratio"] <= 1.10
        checks["flat_ask"] = checks["ask_ratio"] <= 1.20
        checks["flat_ask_cpu"] = checks["ask_cpu_ratio"] <= 1.20
    rate = ok[-1]["read_tokens_per_s"] if ok else None
    cpu_rate = ok[-1]["tokens"] / ok[-1]["cpu_seconds"] if ok and ok[-1].get("cpu_seconds") else None
    result = {
        "rmt": [r if "error" in r else {k: v for k, v in r.items() if k != "size"} for r in rmt],
        "full_attention": full,
        "full_attention_stopped": stopped,
        "crossover_tokens": crossover(rate, full) if rate and full else None,
        "crossover_tokens_cpu": crossover(cpu_rate, full, "cpu_seconds") if cpu_rate and full else None,
        # How many times longer full attention takes than the RMT at each measured length.
        "full_over_rmt": [{"tokens": r["tokens"], "wall": round(r["seconds"] / (r["tokens"] / rate), 2),
                           "cpu": round(r["cpu_seconds"] / (r["tokens"] / cpu_rate), 2) if cpu_rate else None}
                          for r in full] if rate else [],
        "checks": checks,
        "notes": [
            "rmt seconds: whole ingest (scan, tokenize, read, save states); model load not timed",
            "full_attention: one forward of the backbone over the whole context, LM head skipped; "
            "rotary positions past max_position_embeddings are extrapolated mechanically",
            "crossover_tokens: context length above which full attention takes longer than the RMT's reading "
            "(wall clock; *_cpu: process CPU time, robust when other jobs share the cores)",
        ],
        "model": str(model_dir),
        "model_is_default": is_default,
        "threads": args.threads or None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0 if len(ok) == len(rmt) else 1


if __name__ == "__main__":
    sys.exit(main())
