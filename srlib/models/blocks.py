"""Pieces shared by the generators: how a scale factor becomes upsampling stages."""

import torch.nn as nn

SCALES = (2, 3, 4)


def upsample_factors(scale: int) -> list[int]:
    """Split `scale` into PixelShuffle factors.

    x4 is two x2 stages rather than one x4 stage: each conv then only has to
    produce 4x its input channels, which is cheaper and trains better. x3 has no
    such split, so it is one conv to 9C followed by PixelShuffle(3).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return [2, 2] if scale == 4 else [scale]


class ShuffleUp(nn.Sequential):
    """conv num_feat -> r^2 * num_feat, PixelShuffle(r), activation.

    Sub-pixel convolution (Shi et al. 2016): all convs run at low resolution and
    the shuffle only rearranges channels into space.
    """

    def __init__(self, num_feat: int, factor: int, act: nn.Module):
        super().__init__(
            nn.Conv2d(num_feat, num_feat * factor**2, 3, padding=1),
            nn.PixelShuffle(factor),
            act,
        )
