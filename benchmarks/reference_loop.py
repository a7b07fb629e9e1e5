"""The plain PyTorch loop srlib's training loop is measured against (see bench.py).

It does the optimisation work an srlib run does for the same config - same model class and
size, Adam with the config's parameters, mean L1, one scheduler step, the EMA update when the
config has one, torch.compile where srlib compiles, the loss read back as a Python float every
step, and for ``fp16`` autocast with a GradScaler (``bf16``: autocast alone) - and nothing
else: no data loading (random tensors of the batch's shapes, made once), no checkpoints, no
logs. ``fp16`` and ``bf16`` run on a GPU only, as in srlib, whose runs are fp32 on a CPU:
asked for on a CPU they are refused.
"""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F

from srlib import build

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ReferenceTrainer:
    """One plain training step at a time (so a benchmark can interleave it with srlib's)."""

    def __init__(self, cfg, device="cpu", precision: str = "fp32", channels_last: bool = False):
        self.device = torch.device(device)
        if precision not in DTYPES:
            raise ValueError(f"precision {precision!r}: the reference loop runs "
                             f"{', '.join(DTYPES)}")
        if precision != "fp32" and self.device.type != "cuda":
            raise ValueError(f"precision {precision!r} on {self.device.type}: the reference "
                             "loop, like srlib, runs fp16 and bf16 on a GPU only (srlib trains "
                             "in fp32 on a CPU); use fp32")
        torch.manual_seed(cfg.seed)
        memory = torch.channels_last if channels_last else torch.contiguous_format
        model = build.model(cfg).to(self.device)  # the same class srlib builds
        self.model = model.to(memory_format=memory)
        # what a careful plain loop uses on a GPU: one fused kernel for the Adam update
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.Adam(self.model.parameters(), **cfg.optimizer.params,
                                          **fused)
        # compiled where srlib compiles (srlib.train.network): the CUDA-graph modes on a GPU
        # only; on a CPU a "reduce-overhead" config trains eager, and so does the reference
        self.compiled = bool(cfg.compile) and (self.device.type == "cuda"
                                               or cfg.compile in (True, "default"))
        mode = None if cfg.compile is True else cfg.compile
        self.forward = torch.compile(self.model, mode=mode) if self.compiled else self.model
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=10**6)
        self.ema_decay = cfg.ema_decay
        self.ema = [p.detach().clone() for p in self.model.parameters()] if cfg.ema_decay else None
        batch, hr_size = cfg.dataset.params.batch_size, cfg.patch_size
        lr_size = hr_size // cfg.scale
        self.lr = torch.rand(batch, 3, lr_size, lr_size,
                             device=self.device).contiguous(memory_format=memory)
        self.hr = torch.rand(batch, 3, hr_size, hr_size,
                             device=self.device).contiguous(memory_format=memory)
        self.precision, self.dtype = precision, DTYPES[precision]
        # fp16 gradients underflow without loss scaling; for fp32 and bf16 it is a no-op
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.model.train()

    def update(self) -> torch.Tensor:
        """One optimisation step, not waited for; returns the detached loss."""
        autocast = (contextlib.nullcontext() if self.dtype is None
                    else torch.autocast(self.device.type, dtype=self.dtype))
        with autocast:
            sr = self.forward(self.lr)
        loss = F.l1_loss(sr.float(), self.hr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, list(self.model.parameters()),
                                     1 - self.ema_decay)
        return loss.detach()

    def step(self) -> float:
        """One optimisation step, its loss read back (what a loop that logs every loss does,
        and the only way to time one step); returns its seconds."""
        _sync(self.device)
        start = time.perf_counter()
        self.update().item()
        return time.perf_counter() - start

    def seconds_per_step(self, steps: int) -> float:
        """Mean seconds of ``steps`` back-to-back steps, losses read back once at the end:
        on a GPU the host queues work ahead instead of waiting after every step."""
        _sync(self.device)
        start = time.perf_counter()
        losses = [self.update() for _ in range(steps)]
        torch.stack(losses).tolist()
        _sync(self.device)
        return (time.perf_counter() - start) / steps


def reference_train_steps(cfg, steps: int, device="cpu", precision: str = "fp32",
                          channels_last: bool = False) -> list[float]:
    """Seconds per step for ``steps`` steps (the caller drops the first, warm-up ones)."""
    trainer = ReferenceTrainer(cfg, device, precision, channels_last)
    return [trainer.step() for _ in range(steps)]
