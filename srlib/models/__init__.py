"""SR networks, one per file: SRResNet, MSRResNet (BasicSR layout), two discriminators."""
from torch import nn

from .msrresnet import MSRResNet
from .srgan_discriminator import SRGANDiscriminator
from .srresnet import SRResNet
from .vgg_discriminator import VGGStyleDiscriminator

__all__ = ["MSRResNet", "SRGANDiscriminator", "SRResNet", "VGGStyleDiscriminator",
           "count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of learnable scalars (BatchNorm running stats are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
