"""BasicSR's VGG-style discriminator (ESRGAN), with its module names (``conv0_0``, ..., ``linear2``)
so its weights load as they are; each 3x3 + 4x4-stride-2 stage halves the patch, down to 4x4."""
import math

import torch
import torch.nn as nn

from srlib.config import ConfigError


class VGGStyleDiscriminator(nn.Module):
    """HR patch (N, C, input_size, input_size) -> real/fake logit (N, 1); no sigmoid."""

    def __init__(self, in_channels: int = 3, num_feat: int = 64, input_size: int = 128):
        super().__init__()
        stages = math.log2(input_size / 4)
        if stages < 1 or stages != int(stages):
            raise ConfigError(f'key "input_size": {input_size} is not 4 times a power of two '
                              "(BasicSR uses 128 or 256): use another patch_size")
        self.input_size, self.stages = input_size, int(stages)
        width = num_feat
        self.conv0_0 = nn.Conv2d(in_channels, width, 3, 1, 1)  # the only conv with a bias
        for i in range(self.stages):
            out = num_feat * min(2**i, 8)
            if i:  # no bias where batch norm follows: its shift makes one redundant
                setattr(self, f"conv{i}_0", nn.Conv2d(width, out, 3, 1, 1, bias=False))
                setattr(self, f"bn{i}_0", nn.BatchNorm2d(out))
            setattr(self, f"conv{i}_1", nn.Conv2d(out, out, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(out))
            width = out
        self.linear1 = nn.Linear(width * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"VGGStyleDiscriminator got a {tuple(x.shape[-2:])} input but was "
                             f"built for {self.input_size}; set its input_size to the HR patch")
        feat = self.lrelu(self.conv0_0(x))  # (N, num_feat, input_size, input_size)
        for i in range(self.stages):     # each stage halves the side: input_size / 2^(i + 1)
            if i:
                feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        # (N, width, 4, 4) -> (N, 16 width) -> (N, 1)
        return self.linear2(self.lrelu(self.linear1(feat.flatten(1))))
