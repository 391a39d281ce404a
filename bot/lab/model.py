"""The watermark segmenter network: a "lite U-Net" (engine.md §6.2) with mask, alpha and colour heads. Torch only.

Imported by training (bot.lab.train) and never at run time: the engine runs the exported ONNX graph through
onnxruntime (bot.engine.segmenter). Shape of the network:

    RGB [0,1] ──stem 3x3/2──► 1/2 ─DS/2─► 1/4 ─DS/2─► 1/8 ─DS/2─► 1/16 ─DS/2─► 1/32
                               │          │           │            │              │
    heads ◄─ full-res refine ◄─ 1/2 ◄──── 1/4 ◄────── 1/8 ◄─────── 1/16 ◄─────────┘   (upsample ×2, concat skip, DS)

DS is a depthwise-separable block (depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU), which is what makes the
network trainable on two CPU cores (29.8 img/s at 256² for the 16-…-160 widths against 3.5 img/s for the smallest
plain U-Net, §6.2). The decoder stops at 1/2 with the heads; they are upsampled ×2 and one tiny convolution at
full resolution, which sees the RGB input again, corrects them so thin strokes and anti-aliased edges are not
lost to the upsampling (upsampling the 5 head channels instead of the features keeps training 2-3× faster). Every
side of the input must be a multiple of 32.

Outputs (N×C×H×W, same H, W as the input): ``mask`` logit (1 channel; sigmoid in the exported graph), ``alpha``
(1 channel, sigmoid: the blend opacity A of J = (1-A)·I + A·W) and ``colour`` (3 channels, sigmoid: W / 255).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BASE_WIDTHS", "OUTPUT_NAMES", "Exported", "LiteUNet", "count_parameters"]

BASE_WIDTHS = (16, 24, 32, 64, 96, 160)  # stem (1/2), 1/4, 1/8, 1/16, 1/32 encoder; last is the bottleneck block
REFINE_WIDTH = 8  # channels of the full-resolution refinement (kept tiny: at 256² it is most of the cost)
MULTIPLE = 32  # the encoder halves five times
OUTPUT_NAMES = ("mask", "alpha", "colour")


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (maybe strided) then pointwise 1x1; residual when the shape is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = _conv_bn(cin, cin, 3, stride, groups=cin)
        self.pointwise = _conv_bn(cin, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(x))
        return x + y if self.residual else y


class LiteUNet(nn.Module):
    """The segmenter. width scales every channel count (1.0 = 16-…-160, 2.0 = engine.md's "lite ×2")."""

    def __init__(self, width: float = 3.0, colour: bool = True) -> None:
        super().__init__()
        c = [max(8, round(w * width / 8) * 8) for w in BASE_WIDTHS]
        self.widths = tuple(c)
        self.stem = _conv_bn(3, c[0], 3, stride=2)  # 1/2
        # Encoder stages 1/4 .. 1/32: a strided block then a residual one.
        self.down = nn.ModuleList(
            nn.Sequential(SeparableBlock(c[i], c[i + 1], stride=2), SeparableBlock(c[i + 1], c[i + 1]))
            for i in range(4)
        )
        self.bottleneck = SeparableBlock(c[4], c[5])
        # Decoder: from 1/32 back to 1/2, each level = upsample, concat the skip, one separable block.
        skips = [c[3], c[2], c[1], c[0]]
        ins = [c[5], c[3], c[2], c[1]]
        self.up = nn.ModuleList(SeparableBlock(i + s, s) for i, s in zip(ins, skips))
        self.channels = 5 if colour else 2
        self.coarse = nn.Conv2d(c[0], self.channels, 1)  # the heads at 1/2
        # Full resolution: the upsampled heads and the RGB input -> a residual correction of the heads.
        self.refine = nn.Sequential(
            _conv_bn(self.channels + 3, REFINE_WIDTH, 3), nn.Conv2d(REFINE_WIDTH, self.channels, 1)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: N×3×H×W RGB in [0, 1]. Returns raw heads: mask logit, alpha and colour already through sigmoid."""
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        y = self.bottleneck(skips.pop())
        for block in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        # Upsampling the few head channels rather than the features keeps the full-resolution work small.
        coarse = F.interpolate(self.coarse(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        out = coarse + self.refine(torch.cat([coarse, x], dim=1))
        heads = {"mask": out[:, :1], "alpha": torch.sigmoid(out[:, 1:2])}
        if self.channels == 5:
            heads["colour"] = torch.sigmoid(out[:, 2:5])
        return heads


class Exported(nn.Module):
    """What goes into the ONNX file: probabilities only, as a tuple in OUTPUT_NAMES order."""

    def __init__(self, net: LiteUNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = self.net(x)
        out = (torch.sigmoid(heads["mask"]), heads["alpha"])
        return out + (heads["colour"],) if "colour" in heads else out


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters (BatchNorm statistics excluded)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
