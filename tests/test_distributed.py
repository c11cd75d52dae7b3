"""Data-parallel training: 2 gloo processes on CPU end where one process on the same global
batch ends (the trainer's own steps; each rank's samples are recorded and replayed to the
single process). qa1 answers are one token each, so both ranks' losses average over equally
many tokens and the DDP mean of the two equals the single process's mean. AdamW hardly sees
the scale of a gradient, so the gradient norms of every step are compared too.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.tasks import TaskSample
from model.train import Trainer, TrainConfig

STEPS = 3
WORLD = 2
GLOBAL_BATCH = 4


def config(output: Path) -> TrainConfig:
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
    return TrainConfig(
        output=str(output), backbone=tiny, num_mem_tokens=2, segment_size=16, tasks=["qa1"], babi_dir=None, noise_dir=None,
        curriculum=[0], batch_size=GLOBAL_BATCH, lr=1e-3, warmup_steps=1, device="cpu", threads=1, seed=0,
    )


def trained(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def worker(rank: int, port: int, folder: str) -> None:
    """One rank: a few training steps through DDP; writes what it drew (and rank 0 the weights)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    trainer = Trainer(config(Path(folder) / f"rank{rank}"))
    drawn: list[list[dict]] = []
    draw = trainer.batch_samples

    def recorded() -> tuple[list[TaskSample], list[int]]:
        samples, stages = draw()
        drawn.append([asdict(s) for s in samples])
        return samples, stages

    trainer.batch_samples = recorded
    norms = [trainer.train_step()["grad_norm"] for _ in range(STEPS)]
    Path(folder, f"drawn{rank}.json").write_text(json.dumps({"samples": drawn, "grad_norms": norms}))
    if rank == 0:
        save_file(trained(trainer), str(Path(folder) / "ddp.safetensors"))
    trainer.dist.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    port = free_port()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=worker, args=(rank, port, str(tmp_path))) for rank in range(WORLD)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)  # generous: a busy CI machine starts two spawned interpreters slowly
    for process in processes:
        if process.is_alive():
            process.terminate()
    assert [p.exitcode for p in processes] == [0] * WORLD

    records = [json.loads((tmp_path / f"drawn{rank}.json").read_text()) for rank in range(WORLD)]
    drawn = [record["samples"] for record in records]
    assert all(len(steps[0]) == GLOBAL_BATCH // WORLD for steps in drawn)  # each rank draws its share
    assert drawn[0][0][0]["context_ids"] != drawn[1][0][0]["context_ids"]  # from its own stream

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(config(tmp_path / "single"))
        batches = iter([[TaskSample(**s) for rank in range(WORLD) for s in drawn[rank][step]] for step in range(STEPS)])
        single.batch_samples = lambda: (lambda samples: (samples, [0] * len(samples)))(next(batches))
        norms = [single.train_step()["grad_norm"] for _ in range(STEPS)]
    finally:
        torch.set_num_threads(threads)

    for record in records:
        assert record["grad_norms"] == pytest.approx(norms, rel=1e-5)
    ddp = load_file(str(tmp_path / "ddp.safetensors"))
    initial = Trainer(config(tmp_path / "initial")).model.state_dict()
    for name, weight in trained(single).items():
        assert not torch.equal(weight, initial[name]), f"{name} did not train"
        # a step moves weights by ~lr (1e-3): ranks out of step would differ by that much
        assert torch.allclose(ddp[name], weight, atol=1e-5, rtol=0), f"{name}: max difference {(ddp[name] - weight).abs().max():.2e}"
