"""Exponential moving average of the generator (BasicSR's MSRResNet recipe uses 0.999).

torch's own AveragedModel does the bookkeeping; buffers (batch-norm statistics) are averaged
too so an SRResNet EMA copy evaluates consistently.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
