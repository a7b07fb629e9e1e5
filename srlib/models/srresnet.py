"""SRResNet (SRGAN's generator, Ledig et al. 2017) and the sub-pixel upsampling MSRResNet shares."""
from collections.abc import Sequence

import torch
from torch import nn

from srlib.config import ConfigError

# Mean RGB of the DIV2K training images in [0, 1] (the figure EDSR's MeanShift uses).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


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


class ResidualBlockBN(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus identity (no conv bias: BN's shift follows)."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """LR in [0, 1] -> unclamped SR. The last conv's bias starts at `output_mean` (None: PyTorch's
    init): nothing else shifts the output; Adam at lr 5e-4 needs ~900 steps from 0 (too dark)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
                 num_block: int = 16, scale: int = 4,
                 output_mean: Sequence[float] | None = DIV2K_RGB_MEAN):
        super().__init__()
        self.scale = scale
        # the 9x9 head/tail give a wide receptive field at the ends of the net
        self.head = nn.Sequential(nn.Conv2d(in_channels, num_feat, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[ResidualBlockBN(num_feat) for _ in range(num_block)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, padding=1, bias=False), nn.BatchNorm2d(num_feat))
        self.upsample = nn.Sequential(
            *[ShuffleUp(num_feat, f, nn.PReLU()) for f in upsample_factors(scale)])
        self.tail = nn.Conv2d(num_feat, out_channels, 9, padding=4)
        if output_mean is DIV2K_RGB_MEAN and out_channels != 3:  # e.g. a Y-only model
            output_mean = (sum(DIV2K_RGB_MEAN) / 3,) * out_channels
        if output_mean is not None:
            if len(output_mean) != out_channels:
                raise ConfigError(f'key "output_mean": {len(output_mean)} values for '
                                  f"{out_channels} output channels")
            with torch.no_grad():
                self.tail.bias.copy_(torch.tensor(output_mean))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)  # (N, 3, H, W) -> (N, C, H, W)
        # long skip: the body only has to learn a correction to the head's features
        feat = self.upsample(feat + self.body_tail(self.body(feat)))  # -> (N, C, sH, sW)
        # the image in fp32 even under bf16 autocast, whose step near 1.0 (2^-8) is a grey level
        with torch.autocast(feat.device.type, enabled=False):
            return self.tail(feat.float())  # -> (N, 3, sH, sW)
