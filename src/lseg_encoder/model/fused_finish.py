"""The last x2 upsample and the channel normalisation as one Triton kernel, inside an exported graph.

The compiled runner runs `kernels.upsample_normalize` after its CUDA graph, as a plain launch. An
AOTInductor package has no "after": whatever the C++ runner replays is in the package. So the fp16
CUDA packages end with `FusedFinish`, which calls the kernel as the op `lseg::upsample2_normalize`
that AOTInductor compiles into the package (graph revision 8): C++ and Python then write the
features with the same kernel, and the comparison between them is a comparison of runners.
"""

from __future__ import annotations

import torch
from torch import nn

from ..precisions import half_on_cuda
from .fuse import LowPrecisionEncoder


def fused_finish_default(precision: str, device: str | torch.device) -> bool:
    """fp16/bf16 on CUDA, where the kernel was measured (docs/benchmarks.md, eighth session: 0.6-2.5 %
    of the forward at 260-780 px and 2.2 % at batch 16 x 480 on the H100, with the Inductor settings
    of `lseg_encoder.inductor_settings`). fp32 keeps Inductor's two kernels, CPUs have no Triton."""
    return half_on_cuda(precision, device)


class FusedFinish(nn.Module):
    """image -> unit features in `dtype`, NCHW-contiguous: the trunk of `model` (built with
    `defer_upsample=True`, so it ends at head1 before its last x2 upsample), then the kernel.

    head1 is made channels-last before the op: the kernel gathers along x, and reading an NCHW head1
    is 6-17x slower (run 34). The op keeps the strides it was traced with, so this states the layout
    for Inductor; where the convolution already writes channels-last, the conversion is no copy."""

    def __init__(self, model: LowPrecisionEncoder, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not model.deferred_upsample:
            raise ValueError("FusedFinish needs an encoder built with defer_upsample=True")
        self.model = model
        self.dtype = dtype

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from ..kernels.upsample_normalize import upsample2_normalize_op  # triton is imported only where it runs

        head = self.model.trunk(image).contiguous(memory_format=torch.channels_last)
        return upsample2_normalize_op(head, self.dtype)
