"""Inference-time rewrites that keep the math: BatchNorm folding and the low-precision wrapper.

Folding eval BatchNorm into the preceding conv removes 16 normalisation kernels from the decoder
(and 104 from ResNet-101); the change is float rounding only (checked by the fidelity suite).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .decoder import ResidualConvUnit
from .encoder import LSegEncoder, normalize_channels
from .late_upsample import move_upsamples_late, upsample_x2
from .patch_gemm import patch_embedding_as_gemm
from .readout_gemm import readouts_as_gemms
from .resnet import Bottleneck
from .vit import Attention, LayerNorm32


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to bn(conv(x)) for eval-mode BatchNorm."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_batchnorm(encoder: LSegEncoder) -> LSegEncoder:
    """A copy of `encoder` with every conv->BatchNorm pair folded (BN replaced by Identity)."""
    model = copy.deepcopy(encoder).eval()
    for module in model.modules():
        if isinstance(module, ResidualConvUnit):
            module.conv1, module.bn1 = fold_conv_bn(module.conv1, module.bn1), nn.Identity()
            module.conv2, module.bn2 = fold_conv_bn(module.conv2, module.bn2), nn.Identity()
        elif isinstance(module, Bottleneck):
            for i in (1, 2, 3):
                conv, bn = getattr(module, f"conv{i}"), getattr(module, f"bn{i}")
                setattr(module, f"conv{i}", fold_conv_bn(conv, bn))
                setattr(module, f"bn{i}", nn.Identity())
            if module.downsample is not None:
                module.downsample = nn.Sequential(fold_conv_bn(module.downsample[0], module.downsample[1]))
    if not model.config.is_vit:
        stem = model.pretrained.layer1
        stem[0], stem[1] = fold_conv_bn(stem[0], stem[1]), nn.Identity()
    return model


def placed(encoder: LSegEncoder, device, dtype: torch.dtype = torch.float32) -> LSegEncoder:
    """`encoder` in eval mode on `device` in `dtype`: the module itself when it is already there,
    otherwise a copy, so runners and exporters never move or cast the caller's module."""
    device = torch.device(device)
    first = next(encoder.parameters())
    here = first.device.type == device.type and (device.index is None or first.device == device)
    if here and first.dtype == dtype and not encoder.training:
        return encoder
    copy_ = copy.deepcopy(encoder) if first.device.type == "cpu" else _cpu_copy(encoder)
    return copy_.to(device, dtype).eval()


def _cpu_copy(encoder: LSegEncoder) -> LSegEncoder:
    """A deep copy without a second device-resident copy of the weights on the way."""
    from .encoder import build_encoder

    clone = build_encoder(encoder.config)
    clone.load_state_dict({k: v.cpu() for k, v in encoder.state_dict().items()})
    clone.__dict__.update({k: v for k, v in encoder.__dict__.items() if k in ("synthetic", "source")})
    return clone


class LowPrecisionEncoder(nn.Module):
    """fp32 image in -> encoder in `dtype` with fp32 islands -> fp32 unit-norm features out.

    Islands: LayerNorm (fp32 weights and compute), the final L2 normalisation, and, when
    `explicit_softmax`, the attention softmax (the ONNX graph needs it spelled out; fused SDPA
    kernels accumulate the softmax in fp32 already).

    `late_upsample` applies `model.late_upsample.move_upsamples_late` (same maths, fewer pixels for
    the decoder's 1x1 convs), `patch_gemm` `model.patch_gemm.patch_embedding_as_gemm` (same maths,
    one GEMM), `readout_gemm` `model.readout_gemm.readouts_as_gemms` (same maths, the readouts' 1x1
    and transposed convs as GEMMs on the tokens). `forward` is `finish(trunk(image))`; the two
    halves are separate so the compiled runner can replay the trunk as a CUDA graph and write the
    output with an ordinary kernel into memory the caller owns (no copy out of the graph's pool).
    `defer_upsample` (with `late_upsample`) ends the trunk before the last x2 upsample, so that
    `finish` can upsample and normalise in one pass (`kernels.upsample_normalize` on CUDA).
    """

    def __init__(self, encoder: LSegEncoder, dtype: torch.dtype, *, explicit_softmax: bool = False,
                 late_upsample: bool = False, patch_gemm: bool = False, readout_gemm: bool = False,
                 defer_upsample: bool = False):
        super().__init__()
        if defer_upsample and not late_upsample:
            raise ValueError("defer_upsample needs late_upsample (the last upsample must follow head1)")
        model = copy.deepcopy(encoder).float().eval()
        if late_upsample:
            model = move_upsamples_late(model)
            model.scratch.refinenet1.upsample_output = not defer_upsample
        if patch_gemm:
            model = patch_embedding_as_gemm(model)
        if readout_gemm:
            model = readouts_as_gemms(model)
        if dtype != torch.float32:
            model = model.to(dtype)
            for module in model.modules():
                if isinstance(module, LayerNorm32):
                    module.float()
        for module in model.modules():
            if isinstance(module, Attention):
                module.explicit_fp32_softmax = explicit_softmax
        self.encoder = model
        self.config = encoder.config
        self.dtype = dtype

    def trunk(self, image: torch.Tensor) -> torch.Tensor:
        """head1 in `dtype`, before normalisation (before its last x2 upsample when `deferred_upsample`)."""
        return self.encoder.forward_head(image.to(self.dtype))

    @property
    def deferred_upsample(self) -> bool:
        return not getattr(self.encoder.scratch.refinenet1, "upsample_output", True)

    @staticmethod
    def normalize(head: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Unit features in `dtype`, normalised in fp32 either way."""
        return normalize_channels(head).to(dtype)

    def finish(self, head: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The trunk's output -> unit features in `dtype` (the deferred upsample first, if any)."""
        return self.normalize(upsample_x2(head) if self.deferred_upsample else head, dtype)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.finish(self.trunk(image))
