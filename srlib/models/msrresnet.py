"""MSRResNet: SRResNet without BatchNorm, as in BasicSR (Wang et al., ESRGAN 2018). Module names
match BasicSR's `MSRResNet`, so its state-dict keys map 1:1 (conv_first, body.N.conv1/conv2,
upconv1, upconv2, conv_hr, conv_last)."""
import torch
import torch.nn.functional as F
from torch import nn

from .srresnet import upsample_factors


class ResidualBlockNoBN(nn.Module):
    """conv3x3-ReLU-conv3x3 plus identity. BN is dropped: it hurts SR (EDSR, ESRGAN)."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """LR in [0, 1] -> SR (unclamped: the caller clamps), a residual over bilinear upsampling."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
                 num_block: int = 16, scale: int = 4):
        super().__init__()
        self.scale = scale
        factors = upsample_factors(scale)
        self.conv_first = nn.Conv2d(in_channels, num_feat, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        self.upconv1 = nn.Conv2d(num_feat, num_feat * factors[0] ** 2, 3, padding=1)
        if len(factors) == 2:
            self.upconv2 = nn.Conv2d(num_feat, num_feat * factors[1] ** 2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(factors[0])
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)
        # BasicSR's default_init_weights (Kaiming-normal x 0.1, zero bias): each residual branch
        # starts near zero, so the net starts close to its skip paths and trains stably without BN
        with torch.no_grad():
            for conv in (m for m in self.modules() if isinstance(m, nn.Conv2d)):
                nn.init.kaiming_normal_(conv.weight).mul_(0.1)
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))          # (N, 3, H, W) -> (N, C, H, W)
        out = self.lrelu(self.shuffle(self.upconv1(out)))        # -> (N, C, 2H, 2W) at x4
        if self.scale == 4:
            out = self.lrelu(self.shuffle(self.upconv2(out)))    # -> (N, C, 4H, 4W)
        out = self.conv_last(self.lrelu(self.conv_hr(out)))      # -> (N, 3, sH, sW)
        # autocast runs the interpolation in fp32, so the sum (the image) is fp32 too
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
