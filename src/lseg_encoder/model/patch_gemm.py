"""Inference rewrite: the ViT's patch embedding as one GEMM instead of a 16x16 stride-16 conv (issue 13).

Why: a conv whose kernel equals its stride is a matrix product over non-overlapping patches, but with
3 input channels cuDNN has no aligned tensor-core tiling for it and runs an sm80 "indexed, without
shared memory" implicit GEMM (0.05 ms at 260 px, 0.20 ms at 910 px on the H100, docs/benchmarks.md),
where the same product as (patches x 768) @ (768 x 1024) is one cuBLAS GEMM after a copy that
gathers the patches. Same maths: only the order of the sums differs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import LSegEncoder


class PatchGemm(nn.Module):
    """`Conv2d(c, d, kernel_size=p, stride=p)` as patch gather + `F.linear`; returns the same
    (B, d, H // p, W // p) map (rows and columns beyond the last whole patch are ignored, as the
    stride ignores them)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        p = conv.kernel_size[0]
        if conv.kernel_size != (p, p) or conv.stride != (p, p) or conv.padding != (0, 0) or conv.groups != 1:
            raise ValueError(f"not a patch embedding: {conv}")
        self.patch = p
        # (d, c, p, p) -> (d, c*p*p), in the (channel, row, column) order the gather below produces
        self.weight = nn.Parameter(conv.weight.detach().reshape(conv.out_channels, -1).clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        gh, gw = h // p, w // p
        patches = x[:, :, : gh * p, : gw * p].reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        t = F.linear(patches.reshape(b, gh * gw, c * p * p), self.weight, self.bias)
        return t.transpose(1, 2).reshape(b, -1, gh, gw)


def patch_embedding_as_gemm(encoder: LSegEncoder) -> LSegEncoder:
    """A copy of a ViT `encoder` whose patch embedding is a `PatchGemm` (ResNet encoders: unchanged copy)."""
    model = copy.deepcopy(encoder).eval()
    if model.config.is_vit:
        vit = model.pretrained.model
        vit.patch_embed.proj = PatchGemm(vit.patch_embed.proj)
    return model
