"""Super-resolution networks: SRResNet, MSRResNet (BasicSR layout) and the SRGAN discriminator."""

import torch.nn as nn

from .basicsr import load_basicsr_msrresnet, msrresnet_from_basicsr
from .discriminator import Discriminator
from .msrresnet import MSRResNet
from .srresnet import SRResNet


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of learnable scalars (BatchNorm running stats are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "SRResNet",
    "MSRResNet",
    "Discriminator",
    "count_parameters",
    "load_basicsr_msrresnet",
    "msrresnet_from_basicsr",
]
