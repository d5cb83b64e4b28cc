"""DPT/RefineNet decoder ("scratch") shared by every LSeg backbone (SPEC §4).

ReLU residual units with eval-mode BatchNorm, fusion by addition, and a x2 bilinear upsample with
align_corners=True in every fusion block; `refinenet4` takes a single input, so the checkpoint's
`refinenet4.resConfUnit1` is not built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.bn1(self.conv1(F.relu(x)))
        a = self.bn2(self.conv2(F.relu(a)))
        return a + x


class FusionBlock(nn.Module):
    def __init__(self, ch: int, two_inputs: bool):
        super().__init__()
        if two_inputs:
            self.resConfUnit1 = ResidualConvUnit(ch)
        self.resConfUnit2 = ResidualConvUnit(ch)
        self.out_conv = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Decoder(nn.Module):
    def __init__(self, level_channels: tuple[int, ...], features: int, out_dim: int):
        super().__init__()
        for i, ch in enumerate(level_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(ch, features, 3, padding=1, bias=False))
        self.refinenet1 = FusionBlock(features, True)
        self.refinenet2 = FusionBlock(features, True)
        self.refinenet3 = FusionBlock(features, True)
        self.refinenet4 = FusionBlock(features, False)
        self.head1 = nn.Conv2d(features, out_dim, 1)

    def forward(self, layers: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Returns (path_1..path_4, head1 before normalisation)."""
        l1, l2, l3, l4 = (self.layer1_rn(layers[0]), self.layer2_rn(layers[1]),
                          self.layer3_rn(layers[2]), self.layer4_rn(layers[3]))
        path4 = self.refinenet4(l4)
        path3 = self.refinenet3(path4, l3)
        path2 = self.refinenet2(path3, l2)
        path1 = self.refinenet1(path2, l1)
        return [path1, path2, path3, path4], self.head1(path1)
