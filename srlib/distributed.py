"""Where and how each process computes: its device, its precision (autocast), and torchrun's
process group (PyTorch DDP), no-ops for one process. ``torchrun --nproc_per_node N -m srlib train``
sets RANK, WORLD_SIZE and LOCAL_RANK; each rank takes its share of one global batch (see
``data/sampler.py``): the batch is ``batch_size`` for any N. Only rank 0 logs, validates, saves."""
import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel

from srlib.config import ConfigError


def pick_device(name: str = "auto", local_rank: int = 0) -> str:
    """``auto`` -> the GPU of this process when one is visible, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError('key "device": "cuda" was asked for, but no CUDA GPU is visible; '
                          'use "auto" or "cpu"')
    return f"cuda:{local_rank}" if name == "cuda" else name


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device_type: str, precision: str):
    """Mixed precision (fp16/bf16; the weights stay float32) for forward passes, not backward."""
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run after saving ``last.pt``; ``signum`` says which."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def stop_signals(stop: dict) -> Iterator[None]:
    """SIGINT and SIGTERM (what a cloud machine sends before it stops) set ``stop`` and the
    loop ends after the current iteration, saving; a second signal interrupts at once."""
    def handler(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.update(signum=signum, name=signal.Signals(signum).name)
    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay with whoever has them
        previous = {}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


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
        """Join the group torchrun describes (NCCL on GPUs, gloo on CPUs), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        info = cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), world)
        if not torch_dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(info.local_rank)
            torch_dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return info

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        on_gpu = next(model.parameters()).is_cuda
        if on_gpu:  # batch-norm statistics over the whole global batch, not each rank's share
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[self.local_rank] if on_gpu else None)

    # Collectives that keep the ranks' decisions identical; every rank calls them together.
    def broadcast(self, value: float, device) -> float:
        """Rank 0's ``value`` on every rank (e.g. the validation PSNR only rank 0 computes)."""
        if not self.enabled:
            return value
        t = torch.tensor([value if self.is_main else 0.0], dtype=torch.float64, device=device)
        torch_dist.broadcast(t, src=0)
        return float(t.item())

    def mean(self, values: list, device) -> list:
        """Each of ``values`` averaged over the ranks (e.g. the logged half-batch losses)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(t)
        return (t / self.world_size).tolist()

    def any(self, flag: bool, device) -> bool:
        """True on every rank when ``flag`` is true on at least one (e.g. a time budget)."""
        return self.mean([float(flag)], device)[0] > 0

    def stop_together(self, reason: str | None, log_point: bool, device) -> str | None:
        """Why the loop stops now (a signal, max_minutes), or None. Under DDP the ranks agree at
        log points, so that all stop at one iteration: a rank that stopped alone would leave
        the others waiting forever in the next all-reduce."""
        if not self.enabled:
            return reason
        if not (log_point and self.any(reason is not None, device)):
            return None
        if self.any(reason not in (None, "max_minutes"), device):  # a signal wins, everywhere
            return reason if reason not in (None, "max_minutes") else "a stop on another rank"
        return "max_minutes"  # on every rank, or one ends as a signal stop and exits 143

    def check_same(self, value: int, device, what: str) -> None:
        """Refuse to go on when the ranks disagree on ``value`` (e.g. the resumed iteration)."""
        if not self.enabled:
            return
        t = torch.tensor([value, -value], dtype=torch.int64, device=device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        if int(t[0]) != -int(t[1]):
            raise ConfigError(f"the ranks of this torchrun run disagree on {what} ({-int(t[1])} "
                              f"to {int(t[0])}): resuming a run on several hosts needs a logdir "
                              "that every host sees")

    def barrier(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.barrier()

    @contextlib.contextmanager
    def host_leader_first(self) -> Iterator[None]:
        """The block runs on each host's first process, then on the others: for work whose
        result the processes of a host share, such as a cache file."""
        if self.local_rank:
            self.barrier()
        yield
        if not self.local_rank:
            self.barrier()

    def close(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
