"""Pixel-wise content losses (L1 / MSE) between SR output and HR target."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_PIXEL_FUNCS = {"l1": F.l1_loss, "mse": F.mse_loss}


class PixelLoss(nn.Module):
    """Mean L1 or MSE over all pixels.

    MSE is what SRResNet optimises (and what PSNR measures); L1 is the usual
    choice for MSRResNet because it gives sharper edges and trains more stably.
    """

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        if kind not in _PIXEL_FUNCS:
            raise ValueError(f"unknown pixel loss kind {kind!r}; valid kinds: {sorted(_PIXEL_FUNCS)}")
        self.kind = kind
        self._fn = _PIXEL_FUNCS[kind]

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self._fn(sr, hr, reduction="mean")

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
