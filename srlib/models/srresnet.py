"""SRResNet, the generator of SRGAN (Ledig et al. 2017, "Photo-Realistic Single
Image Super-Resolution Using a Generative Adversarial Network")."""

from typing import Optional, Sequence

import torch
import torch.nn as nn

from .blocks import ShuffleUp, upsample_factors


# Mean RGB of the DIV2K training images in [0, 1] (the figure EDSR's MeanShift uses).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


@torch.no_grad()
def init_output_mean(conv: nn.Conv2d, mean: Sequence[float]) -> None:
    """Start the last conv's bias at the data's mean colour.

    Nothing else in SRResNet shifts the output, and Adam moves a bias by about one learning
    rate per step: from 0, reaching a mean of 0.45 at lr 5e-4 would take ~900 steps of
    producing images that are too dark. Starting there costs nothing and changes no
    parameter count; the weights keep PyTorch's default initialisation.
    """
    if len(mean) != conv.out_channels:
        raise ValueError(f"output_mean has {len(mean)} values for {conv.out_channels} "
                         "output channels")
    conv.bias.copy_(torch.tensor(mean, dtype=conv.bias.dtype))


class ResidualBlockBN(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus identity.

    The convs have no bias: BatchNorm's learned shift right after makes it redundant.
    """

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
    """LR in [0, 1] -> SR of the same range (no final activation; the caller clamps).

    PReLU uses one shared slope per layer (PyTorch's default), so each costs 1 parameter.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
                 num_block: int = 16, scale: int = 4,
                 output_mean: Optional[Sequence[float]] = DIV2K_RGB_MEAN):
        super().__init__()
        self.scale = scale
        # the 9x9 head/tail give a wide receptive field at the ends of the net
        self.head = nn.Sequential(nn.Conv2d(in_channels, num_feat, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[ResidualBlockBN(num_feat) for _ in range(num_block)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, padding=1, bias=False), nn.BatchNorm2d(num_feat)
        )
        self.upsample = nn.Sequential(
            *[ShuffleUp(num_feat, f, nn.PReLU()) for f in upsample_factors(scale)]
        )
        self.tail = nn.Conv2d(num_feat, out_channels, 9, padding=4)
        if output_mean is DIV2K_RGB_MEAN and out_channels != 3:  # e.g. a Y-only model
            output_mean = (sum(DIV2K_RGB_MEAN) / 3,) * out_channels
        if output_mean is not None:
            init_output_mean(self.tail, output_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        # long skip: the body only has to learn a correction to the head's features
        feat = feat + self.body_tail(self.body(feat))
        return self.tail(self.upsample(feat))
