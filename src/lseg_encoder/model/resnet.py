"""ResNet-101 backbone of the LSeg zero-shot variant (`clip_resnet101`, fss_rn101.ckpt).

torchvision v1.5 numerics (stride on the 3x3 conv, BN eps 1e-5) written in plain torch, because
torchvision does not import beside the CPU torch wheel used here. Module names mirror the
checkpoint (`pretrained.layer1.0` = stem conv, `.1` = stem BN, `.4` = resnet.layer1; SPEC §6.2).
"""

from __future__ import annotations

import torch
from torch import nn

from ..configs import ResNetConfig


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _stage(in_ch: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(in_ch, width, stride)]
    layers += [Bottleneck(width * 4, width, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetBackbone(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        w = cfg.width
        stem = [nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1), _stage(w, w, cfg.blocks[0], 1)]
        self.layer1 = nn.Sequential(*stem)
        self.layer2 = _stage(4 * w, 2 * w, cfg.blocks[1], 2)
        self.layer3 = _stage(8 * w, 4 * w, cfg.blocks[2], 2)
        self.layer4 = _stage(16 * w, 8 * w, cfg.blocks[3], 2)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return [], [l1, l2, l3, l4]
