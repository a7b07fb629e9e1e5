"""StandardSolver: pixel and perceptual losses, one optimiser (SRResNet / MSRResNet)."""
from __future__ import annotations

import torch

from srlib.losses import CombinedLoss
from srlib.solvers.base import BaseSolver
from srlib.solvers.checkpoint import generator_state
from srlib.solvers.loss_terms import build_content_loss


class StandardSolver(BaseSolver):
    """Minimises the weighted sum of the config's content terms."""

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        self.loss: CombinedLoss = build_content_loss(config).to(self.device)
        self.notes.extend(getattr(self.loss, "notes", []))
        if config.generator_path and not config.checkpoint:
            self.model.load_state_dict(generator_state(config.generator_path))

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict:
        if not self.model.training:  # validation switched it to eval (a walk over every
            self.net.train()         # module: ~1 ms of host time, so not on every step)
        with self.autocast():
            sr = self.net(lr)
        total, terms = self.loss(sr.float(), hr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": total.detach(), **terms}

    def load_checkpoint(self, path) -> None:
        self.restore(path)
