"""This process's place in a torchrun job and the collectives the trainer needs (no-ops in one process)."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..runtime import resolve_device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (world size 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def videos_per_step(self, batch_size: int) -> int:
        """Videos per optimizer step on this rank: `batch_size` in total across ranks (spec §7)."""
        return max(1, batch_size // self.world_size)

    def data_parallel(self, module: nn.Module) -> nn.Module:
        """`module` wrapped in DDP under torchrun (buffers are constant, so none are broadcast)."""
        return DistributedDataParallel(module, broadcast_buffers=False) if self.enabled else module

    def gradient_sync(self, module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Accumulate gradients locally (DDP's no_sync) unless this backward ends an optimizer step."""
        if self.enabled and not sync:
            return module.no_sync()
        return contextlib.nullcontext()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def mean(self, totals: dict[str, float], count: int, device: torch.device) -> dict[str, float]:
        """Each total summed over ranks, divided by `count` summed over ranks."""
        names = sorted(totals)
        sums = torch.tensor([totals[n] for n in names] + [count], dtype=torch.float64)
        if self.enabled:
            sums = sums.to(device)
            dist.all_reduce(sums)
            sums = sums.cpu()
        return {name: float(sums[i] / sums[-1]) for i, name in enumerate(names)}

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: torch.device | None) -> tuple[Distributed, torch.device]:
    """Join the torchrun job described by the environment (gloo on CPU, nccl on CUDA) and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(), resolve_device(device)
    info = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device, local_rank=info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Evaluation runs on rank 0 while the others wait, so allow long collectives.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=4))
    return info, device


def epoch_shard(num_videos: int, shuffle: random.Random, info: Distributed) -> list[int]:
    """This rank's videos for one epoch: one shared shuffle, padded so every rank gets the same count."""
    order = list(range(num_videos))
    shuffle.shuffle(order)
    per_rank = -(-num_videos // info.world_size)
    padded = [order[i % num_videos] for i in range(per_rank * info.world_size)]
    return padded[info.rank :: info.world_size]
