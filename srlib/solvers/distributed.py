"""Process-group facts for torchrun (PyTorch DDP), and no-ops for a single process.

``torchrun --nproc_per_node N -m srlib train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK;
this reads them, joins the group (NCCL on GPUs, gloo on CPU) and wraps the model in
DistributedDataParallel. Every rank draws its share of the same global batch (see
``sampler.py``), so the effective batch is ``batch_size`` whatever N is; only rank 0 logs,
validates and saves.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls) -> "DistInfo":
        """Join the process group torchrun describes; a plain run gets the single-process info."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        info = cls(rank=int(os.environ["RANK"]), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                   world_size=world)
        if not torch_dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(info.local_rank)
            torch_dist.init_process_group(backend=backend)
        return info

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.barrier()

    def close(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
