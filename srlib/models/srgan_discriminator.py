"""The SRGAN discriminator (Ledig et al. 2017): a VGG-style classifier of HR patches."""
import torch
from torch import nn

from srlib.config import ConfigError


class SRGANDiscriminator(nn.Module):
    """HR patch (N, C, input_size, input_size) -> real/fake logit (N, 1); no sigmoid (the loss
    applies it: BCE-with-logits is safer). The dense head fixes the patch size to `input_size`."""

    def __init__(self, in_channels: int = 3, num_feat: int = 64, input_size: int = 96):
        super().__init__()
        if input_size % 16 != 0:
            raise ConfigError(f'key "input_size": {input_size} is not divisible by 16 (four '
                              "stride-2 convs halve the patch 4 times): use another patch_size")
        self.input_size = input_size
        layers = [nn.Conv2d(in_channels, num_feat, 3, padding=1), nn.LeakyReLU(0.2)]
        cin = num_feat
        # width doubles every other layer, stride 2 when it stays; no conv bias before BatchNorm
        for cout in [num_feat * k for k in (1, 2, 2, 4, 4, 8, 8)]:
            layers += [nn.Conv2d(cin, cout, 3, stride=2 if cout == cin else 1, padding=1,
                                 bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * (input_size // 16)**2, 1024),
                                        nn.LeakyReLU(0.2), nn.Linear(1024, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (h, w) != (self.input_size, self.input_size):
            raise ValueError(f"SRGANDiscriminator got a {h}x{w} input but was built for "
                             f"{self.input_size}x{self.input_size}; set the discriminator "
                             "input_size to the HR patch size")
        feat = self.features(x)       # (N, 8 num_feat, input_size / 16, input_size / 16)
        return self.classifier(feat)  # (N, 1)
