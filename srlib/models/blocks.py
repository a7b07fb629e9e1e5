"""How a scale factor becomes sub-pixel upsampling stages (shared by the generators)."""
from torch import nn

from srlib.config import ConfigError


def upsample_factors(scale: int) -> list[int]:
    """x4 is two x2 stages (each conv then makes 4x, not 16x, its channels); x3 is one."""
    if scale not in (2, 3, 4):
        raise ConfigError(f'key "scale": must be one of 2, 3, 4, got {scale!r}')
    return [2, 2] if scale == 4 else [scale]


class ShuffleUp(nn.Sequential):
    """conv (N, C, H, W) -> (N, r^2 C, H, W), PixelShuffle(r) -> (N, C, rH, rW), act (Shi et
    al. 2016): convs stay at low resolution, the shuffle only rearranges channels into space."""

    def __init__(self, num_feat: int, factor: int, act: nn.Module):
        super().__init__(nn.Conv2d(num_feat, num_feat * factor**2, 3, padding=1),
                         nn.PixelShuffle(factor), act)
