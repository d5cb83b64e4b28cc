"""Inference rewrite: the DPT reassemble (readout) stays in token space until a map is needed (issue 13).

Why: each readout turns its (B, N, C) tokens into a (B, C, gh, gw) map, then runs a 1x1 conv and, at
the two finest levels, a transposed conv whose kernel equals its stride (x4 and x2). cuDNN runs
that transposed conv as a "dgrad" kernel and ATen adds its bias in a separate elementwise pass over
the upsampled map (4 extra kernels per forward on the H100 profile, docs/benchmarks.md). Both ops are
matrix products on the tokens:

- the 1x1 conv is `F.linear` on the token rows, and
- a transposed conv with kernel == stride == k writes each input pixel's k x k output block on its
  own: one GEMM to (B, N, out * k * k), then a pixel shuffle into the (gh * k, gw * k) map, which
  Inductor fuses with the bias add into one copy.

Same maths: only the order of the sums differs. The 3x3 stride-2 conv of the coarsest level stays a
conv, on the token rows viewed as a channels-last map.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import LSegEncoder
from .vit import Readout


class TransposedPatchGemm(nn.Module):
    """`ConvTranspose2d(c, d, kernel_size=k, stride=k)` applied to token rows: (B, gh * gw, c) and the
    grid -> the (B, d, gh * k, gw * k) map the transposed conv would return."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        k = deconv.kernel_size[0]
        if (deconv.kernel_size != (k, k) or deconv.stride != (k, k) or deconv.padding != (0, 0)
                or deconv.output_padding != (0, 0) or deconv.groups != 1 or deconv.dilation != (1, 1)):
            raise ValueError(f"not a kernel == stride transposed conv: {deconv}")
        self.k = k
        self.out_channels = deconv.out_channels
        # (c, d, k, k) -> (d * k * k, c): row (o, di, dj) of the GEMM is output channel o at offset (di, dj)
        self.weight = nn.Parameter(deconv.weight.detach().reshape(deconv.in_channels, -1).t().contiguous())
        bias = deconv.bias.detach() if deconv.bias is not None else torch.zeros(deconv.out_channels)
        self.bias = nn.Parameter(bias.clone())

    def forward(self, rows: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        b, k, d = rows.shape[0], self.k, self.out_channels
        blocks = F.linear(rows, self.weight).reshape(b, gh, gw, d, k, k)
        image = blocks.permute(0, 3, 1, 4, 2, 5).reshape(b, d, gh * k, gw * k)
        return image + self.bias.view(1, d, 1, 1)


def conv1x1_as_linear(conv: nn.Conv2d) -> nn.Linear:
    """The `nn.Linear` on channel rows that a 1x1 conv computes at every pixel."""
    linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    linear = linear.to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear


class TokenReadout(Readout):
    """A Readout whose 1x1 conv (`conv`, now an `nn.Linear`) and kernel == stride upsample (`resample`,
    a `TransposedPatchGemm`) run on the token rows; other resamples get the rows as a map."""

    def forward(self, tokens: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        rows = self.conv(self.projected(tokens))  # (B, N, channels)
        if isinstance(self.resample, TransposedPatchGemm):
            return self.resample(rows, gh, gw)
        image = rows.transpose(1, 2).reshape(rows.shape[0], rows.shape[2], gh, gw)  # a channels-last view
        return self.resample(image)


def readouts_as_gemms(encoder: LSegEncoder) -> LSegEncoder:
    """A copy of a ViT `encoder` whose readouts are `TokenReadout`s (ResNet encoders: unchanged copy)."""
    model = copy.deepcopy(encoder).eval()
    if model.config.is_vit:
        for readout in model.pretrained.readouts.values():
            readout.__class__ = TokenReadout  # same submodules and state, new forward
            readout.conv = conv1x1_as_linear(readout.conv)
            if isinstance(readout.resample, nn.ConvTranspose2d):
                readout.resample = TransposedPatchGemm(readout.resample)
    return model
