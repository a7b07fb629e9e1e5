"""GAN losses on discriminator logits: vanilla (SRGAN) and relativistic average (ESRGAN).

Everything is computed from logits with ``binary_cross_entropy_with_logits`` so
saturated discriminators (logits of +-100) still give finite losses and
gradients; ``sigmoid`` followed by ``log`` would return inf there.

Detaching is the caller's job: in the D step pass ``D(sr.detach())``; in the G
step freeze D's parameters (the relativistic G loss needs ``D(hr)`` too).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ADVERSARIAL_KINDS = ("vanilla", "relativistic")


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class AdversarialLoss(nn.Module):
    """Discriminator and generator losses for one GAN formulation.

    Both discriminator losses average the "real" and "fake" halves (a factor
    of 0.5 relative to the SRGAN paper's sum); with Adam this only rescales
    the loss, not the update.
    """

    def __init__(self, kind: str = "vanilla") -> None:
        super().__init__()
        if kind not in ADVERSARIAL_KINDS:
            raise ValueError(f"unknown adversarial loss kind {kind!r}; valid kinds: {list(ADVERSARIAL_KINDS)}")
        self.kind = kind

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Loss that trains D to tell HR (real) from SR (fake)."""
        if self.kind == "vanilla":
            return 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))
        real_rel, fake_rel = self._relativistic(real_logits, fake_logits)
        return 0.5 * (_bce(real_rel, 1.0) + _bce(fake_rel, 0.0))

    def generator_loss(self, real_logits: torch.Tensor | None, fake_logits: torch.Tensor) -> torch.Tensor:
        """Loss that trains G to fool D.

        Vanilla uses the non-saturating form -log D(G(z)) (strong gradients
        while D still wins) and ignores ``real_logits`` (may be None).
        Relativistic is the mirror image of the D loss, so G also learns from
        the real images' logits.
        """
        if self.kind == "vanilla":
            return _bce(fake_logits, 1.0)
        if real_logits is None:
            raise ValueError("relativistic generator loss needs real_logits (D applied to HR images)")
        real_rel, fake_rel = self._relativistic(real_logits, fake_logits)
        return 0.5 * (_bce(real_rel, 0.0) + _bce(fake_rel, 1.0))

    # Aliases so a solver can write loss.d_loss(...) / loss.g_loss(...).
    d_loss = discriminator_loss
    g_loss = generator_loss

    @staticmethod
    def _relativistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RaGAN: each side is judged relative to the *average* of the other side."""
        return real_logits - fake_logits.mean(), fake_logits - real_logits.mean()

    def forward(self, real_logits: torch.Tensor | None, fake_logits: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`generator_loss` (what ``CombinedLoss``-style callers expect)."""
        return self.generator_loss(real_logits, fake_logits)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
