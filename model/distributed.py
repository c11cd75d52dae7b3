"""Data-parallel training under torchrun (DDP): NCCL between GPUs, gloo between CPU processes.

torchrun starts one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; without them training is one process and everything here is a no-op.
The config's `batch_size` is the global batch: every rank draws `batch_size / world_size`
samples from its own data stream (seeded by rank, so the shares differ), DDP averages the
gradients, and one step is one step on the global batch (exactly, when every share holds as
many answer tokens, since each rank's loss is the mean over its own). Decisions that must be
the same everywhere (stop now, move to the next curriculum stage) are rank 0's, broadcast;
only rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

RANK_SEED_STRIDE = 1_000_003  # data seeds of different ranks stay far apart


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    cuda: bool = False

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """Join the process group torchrun describes (once per process); on CUDA, make this
        rank's GPU the current one, so that "cuda" means it from here on."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, cuda)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's data seed; rank 0's is `seed`, so one process draws what rank 0 would."""
        return seed + RANK_SEED_STRIDE * self.rank

    def share(self, global_batch: int) -> int:
        """This rank's part of the global batch."""
        if global_batch % self.world_size:
            raise ValueError(f"batch_size {global_batch} does not split over {self.world_size} processes")
        return global_batch // self.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train through: DDP over `model` (which stays the one to save), or
        `model` itself in one process. Unused parameters are expected: with truncated BPTT
        the initial memory gets no gradient in steps whose first segments run without one."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.local_rank] if self.cuda else None, find_unused_parameters=True)

    def from_main(self, value: int) -> int:
        """Rank 0's value of an integer (or bool) on every rank."""
        if self.world_size == 1:
            return value
        data = torch.tensor([int(value)], dtype=torch.long, device="cuda" if self.cuda else "cpu")
        dist.broadcast(data, src=0)
        return type(value)(data.item())

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
