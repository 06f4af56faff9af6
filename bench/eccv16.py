"""The architecture of Zhang, Isola and Efros, "Colorful Image Colorization" (ECCV 2016),
as published in richzhang/colorization (eccv16.py), with random weights: what a user would
otherwise run, timed on the same CPU in the same run as our U-Net.

VGG-style: 256x256 L in, eight conv stages (the last two stride-free stages dilated),
313 colour-bin logits at 64x64, softmax, a 1x1 projection to ab and a 4x bilinear upsample.
"""

from __future__ import annotations

import torch
from torch import nn

from .model_bench import count_flops, forward_rate, random_model
from .report import Row

INPUT_SIDE = 256
COLOUR_BINS = 313


def _convs(channels: list[int], *, last_stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
        stride = last_stride if i == len(channels) - 2 else 1
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
    return layers


class ECCV16(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_convs([1, 64, 64], last_stride=2), nn.BatchNorm2d(64),  # 256 -> 128
            *_convs([64, 128, 128], last_stride=2), nn.BatchNorm2d(128),  # -> 64
            *_convs([128, 256, 256, 256], last_stride=2), nn.BatchNorm2d(256),  # -> 32
            *_convs([256, 512, 512, 512]), nn.BatchNorm2d(512),
            *_convs([512, 512, 512, 512], dilation=2), nn.BatchNorm2d(512),
            *_convs([512, 512, 512, 512], dilation=2), nn.BatchNorm2d(512),
            *_convs([512, 512, 512, 512]), nn.BatchNorm2d(512),
            nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1), nn.ReLU(inplace=True),  # -> 64
            *_convs([256, 256, 256]),
            nn.Conv2d(256, COLOUR_BINS, 1),
        )
        self.softmax = nn.Softmax(dim=1)
        self.to_ab = nn.Conv2d(COLOUR_BINS, 2, 1, bias=False)
        self.upsample = nn.Upsample(scale_factor=4, mode="bilinear")

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """(B, 1, 256, 256) L -> (B, 2, 256, 256) ab (annealed-mean decoding left out: it is per-pixel and cheap)."""
        return self.upsample(self.to_ab(self.softmax(self.body(l))))


def eccv16_rows(*, quick: bool) -> list[Row]:
    side = 64 if quick else INPUT_SIDE
    batch = 1 if quick else 2
    repeats = 1 if quick else 3
    torch.manual_seed(0)
    theirs = ECCV16().eval()
    parameters = sum(p.numel() for p in theirs.parameters())
    sample = torch.rand(1, 1, INPUT_SIDE, INPUT_SIDE)
    with torch.inference_mode():
        flops_256 = count_flops(lambda: theirs(sample))
    their_rate, _ = forward_rate(theirs, torch.rand(batch, 1, side, side), repeats=repeats)
    rows = [Row(
        group="ECCV16", figure=f"Zhang et al. forward @{side} b{batch}", value=their_rate, unit="images/s",
        note=f"{parameters / 1e6:.1f} M parameters, {flops_256 / 1e9:.1f} GFLOP per 256x256 forward (FlopCounterMode: 2 per multiply-add)",
        details={"parameters": parameters, "flops_per_256_image": flops_256},
    )]
    our_side = 32 if quick else 128
    for width in (16, 64):
        ours = random_model(width, our_side)
        our_rate, our_flops = forward_rate(ours, torch.rand(batch, 1, our_side, our_side), repeats=repeats)
        rows.append(Row(
            group="ECCV16", figure=f"ours w{width} @{our_side} b{batch} vs ECCV16 @{side}", value=our_rate, unit="images/s",
            ceiling=their_rate, ceiling_label="images/s ECCV16", ratio=our_rate / their_rate,
            note=f"ratio = ours / theirs, each at its own render size; ours {our_flops / 1e9:.2f} GFLOP/image",
        ))
    return rows
