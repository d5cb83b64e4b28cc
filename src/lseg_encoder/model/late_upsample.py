"""Inference rewrite: run the decoder's 1x1 convs before the x2 upsample they follow (issue 13).

Why it keeps the math: a 1x1 conv mixes channels at each pixel and bilinear interpolation mixes
pixels within each channel with weights that sum to 1 (align_corners=True), so the two commute
exactly, bias included: `conv(up(x)) == up(conv(x))` up to float rounding. Every fusion block ends
`out_conv(up(x))`, and refinenet1's result goes straight into `head1`, another 1x1 conv; so

- each fusion block runs its `out_conv` at the lower resolution (a quarter of the pixels), and
- refinenet1's `out_conv` and `head1` fold into one 256 -> 512 conv (`W = W_head @ W_out`,
  `b = W_head @ b_out + b_head`) whose result is upsampled last.

At 910 px this runs two 1x1 convs over 224 x 224 pixels instead of 448 x 448 and upsamples once
(measured on the H100: convs 1.77 -> 1.33 ms per forward at 910 px, docs/benchmarks.md). The last
upsample stays in the model: fused by Inductor into the channel normalisation it became a looped
reduction (3.2 ms at 910 px), and ATen's own kernel outside the graph took 1.1 ms.
The rewritten decoder serves `forward_head` only: the intermediates of `forward_intermediates`
(path_1, head1 at H/2) are the unrewritten model's business.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import FusionBlock
from .encoder import LSegEncoder


def upsample_x2(x: torch.Tensor) -> torch.Tensor:
    """The decoder's upsample: x2 bilinear, align_corners=True (SPEC §4)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


class ConvFirstFusionBlock(FusionBlock):
    """A FusionBlock whose 1x1 `out_conv` runs before the x2 upsample. With `upsample_output` off it
    returns the map before that upsample (whoever takes it must upsample it: `LowPrecisionEncoder`'s
    deferred last upsample)."""

    upsample_output = True

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.out_conv(self.resConfUnit2(x))
        return upsample_x2(x) if self.upsample_output else x


def fold_1x1(inner: nn.Conv2d, outer: nn.Conv2d) -> nn.Conv2d:
    """One 1x1 conv equal to outer(inner(x))."""
    w_in, w_out = inner.weight.flatten(1), outer.weight.flatten(1)
    b_in = inner.bias if inner.bias is not None else torch.zeros(inner.out_channels, dtype=w_in.dtype)
    b_out = outer.bias if outer.bias is not None else torch.zeros(outer.out_channels, dtype=w_out.dtype)
    fused = nn.Conv2d(inner.in_channels, outer.out_channels, 1).to(inner.weight.device, inner.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_((w_out.double() @ w_in.double()).view_as(fused.weight))
        fused.bias.copy_(w_out.double() @ b_in.double() + b_out.double())
    return fused


def move_upsamples_late(encoder: LSegEncoder) -> LSegEncoder:
    """A copy of `encoder` with every fusion block's 1x1 conv moved before its upsample and head1
    folded into refinenet1's."""
    model = copy.deepcopy(encoder).eval()
    scratch = model.scratch
    for name in ("refinenet1", "refinenet2", "refinenet3", "refinenet4"):
        block = getattr(scratch, name)
        block.__class__ = ConvFirstFusionBlock  # same submodules and state, new forward
    scratch.refinenet1.out_conv = fold_1x1(scratch.refinenet1.out_conv, scratch.head1)
    scratch.head1 = nn.Identity()
    return model
