"""GANSolver: SRGAN training. G starts from a trained generator; G and D alternate.

Each iteration: one generator step on content + weighted adversarial loss (D frozen), then
one discriminator step on real HR against the detached SR. D(real) and D(fake) are logged as
probabilities so a reader can see who is winning.
"""
from __future__ import annotations

import torch

from srlib import registry
from srlib.solvers.base import BaseSolver
from srlib.solvers.checkpoint import generator_state
from srlib.solvers.loss_terms import adversarial_term, build_content_loss


class GANSolver(BaseSolver):

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        self.content = build_content_loss(config).to(self.device)
        self.notes.extend(self.content.notes)
        self.adv_weight, self.adversarial = adversarial_term(config)
        self.discriminator = registry.build_discriminator(config).to(self.device)
        if config.channels_last:
            self.discriminator = self.discriminator.to(memory_format=torch.channels_last)
        self.d_net = self.dist.wrap(self.discriminator)
        self.d_optimizer = registry.build_optimizer(config.discriminator.optimizer,
                                                    self.discriminator.parameters())
        self.d_scheduler = registry.build_scheduler(config.discriminator.scheduler,
                                                    self.d_optimizer, self.total_iterations)
        self.d_scaler = torch.amp.GradScaler(self.device.type,
                                             enabled=config.precision == "fp16")
        if config.generator_path and not config.checkpoint:
            self.model.load_state_dict(generator_state(config.generator_path))
            if self.ema is not None:
                self.ema.module.load_state_dict(self.model.state_dict())
        elif not config.checkpoint:
            self.notes.append("GAN generator starts from random weights (no generator_path); "
                              "SRGAN is meant to start from a trained SRResNet")

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict:
        if not (self.model.training and self.discriminator.training):
            self.net.train()  # validation switched them to eval; walking the tree every
            self.d_net.train()  # step would cost ~1 ms of host time on a GPU
        # Generator step: D is frozen so its gradients are not accumulated.
        self.discriminator.requires_grad_(False)
        with self.autocast():
            sr = self.net(lr)
            fake_logits = self.d_net(sr)
            real_logits = self.d_net(hr).detach()
        content, terms = self.content(sr.float(), hr)
        adv = self.adversarial.generator_loss(real_logits.float(), fake_logits.float())
        g_loss = content + self.adv_weight * adv
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

        # Discriminator step on real HR against the detached SR.
        self.discriminator.requires_grad_(True)
        with self.autocast():
            real_logits = self.d_net(hr)
            fake_logits = self.d_net(sr.detach())
        d_loss = self.adversarial.discriminator_loss(real_logits.float(), fake_logits.float())
        self.d_optimizer.zero_grad(set_to_none=True)
        self.d_scaler.scale(d_loss).backward()
        self.d_scaler.step(self.d_optimizer)
        self.d_scaler.update()
        if self.d_scheduler is not None:
            self.d_scheduler.step()
        return {"loss": g_loss.detach(), **terms, "adversarial": adv.detach(),
                "d_loss": d_loss.detach(),
                "d_real": torch.sigmoid(real_logits.detach().float()).mean(),
                "d_fake": torch.sigmoid(fake_logits.detach().float()).mean()}

    def extra_state(self) -> dict:
        return {"discriminator": self.discriminator.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(),
                "d_scheduler": self.d_scheduler.state_dict() if self.d_scheduler else None,
                "d_scaler": self.d_scaler.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        if self.d_scheduler is not None and state.get("d_scheduler") is not None:
            self.d_scheduler.load_state_dict(state["d_scheduler"])
        self.d_scaler.load_state_dict(state["d_scaler"])

    def save_checkpoint(self, name: str = "last"):
        path = super().save_checkpoint(name)
        if path is not None and name == "last":  # D on its own too, for inspection
            from srlib.solvers.checkpoint import save_atomic
            save_atomic({"discriminator": self.discriminator.state_dict(),
                         "iteration": self.iteration}, self.logdir / "discriminator.pt")
        return path

    def load_checkpoint(self, path) -> None:
        self.restore(path)
