"""Deliberately broken variants of the encoder, built here (not in the library) so that fidelity
tests can show that their checks bite. Each returns a copy; the caller's module is untouched."""

from __future__ import annotations

import copy
import types

import torch.nn.functional as F

from lseg_encoder.model.decoder import FusionBlock
from lseg_encoder.model.fuse import LowPrecisionEncoder
from lseg_encoder.model.vit import Attention, LayerNorm32


def _fusion_forward_align_false(self, x, skip=None):
    if skip is not None:
        x = x + self.resConfUnit1(skip)
    x = self.resConfUnit2(x)
    x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)  # official: True
    return self.out_conv(x)


def flipped_align_corners(encoder):
    """The fusion blocks' x2 upsample with align_corners=False (SPEC §5: 5.5e-2 off)."""
    broken = copy.deepcopy(encoder)
    for module in broken.modules():
        if isinstance(module, FusionBlock):
            module.forward = types.MethodType(_fusion_forward_align_false, module)
    return broken


def without_fp16_islands(wrapper: LowPrecisionEncoder) -> LowPrecisionEncoder:
    """An fp16 wrapper whose LayerNorms and attention softmax run in fp16 (no fp32 islands)."""
    broken = copy.deepcopy(wrapper)
    for module in broken.modules():
        if isinstance(module, LayerNorm32):
            module.half()
            module.forward = types.MethodType(
                lambda self, x: F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps), module)
        if isinstance(module, Attention):
            module.explicit_fp32_softmax = False
    return broken

