"""The ViT's attention on the hand-written Triton kernel (`kernels.attention`), issue 13.

An inference rewrite like `gelu_epilogue`: each block's `Attention` becomes a `KernelAttention`
with the same qkv and proj Linears, whose middle is one kernel that reads the qkv GEMM's output
in place and writes the layout proj reads, instead of a permute, cuDNN's SDPA (and the memset
PyTorch issues before it) and a transpose. Used by `CompiledRunner(attention="triton")` and by
fp16 AOTInductor packages for CUDA, by default where `kernel_attention_default` says so.
"""

from __future__ import annotations

import torch
from torch import nn

from .swap import swap_children
from .vit import Attention


class KernelAttention(nn.Module):
    """`proj(attention(qkv(x)))` with the attention in `kernels.attention.attention_from_qkv`."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.heads = attn.heads
        self.qkv = attn.qkv
        self.proj = attn.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..kernels.attention import attention_from_qkv  # triton is imported only where it runs

        return self.proj(attention_from_qkv(self.qkv(x), self.heads))


def use_kernel_attention(model: nn.Module) -> int:
    """Swap every transformer block's Attention for `KernelAttention` in place; returns how many."""
    return swap_children(model, Attention, KernelAttention)


def kernel_attention_default(precision: str, device: str | torch.device) -> bool:
    """The compiled fp16/bf16 paths on CUDA use the kernel by default (compiled runner and AOTI
    packages alike, so C++ and Python run the same graph): on the H100 it was 0.3-7.4 % faster than
    cuDNN's SDPA at 260-910 px and no slower at batch 16 x 480 px, with the fidelity kept
    (docs/benchmarks.md, seventh session). fp32 keeps SDPA: the kernel's fp32 matmuls would be TF32."""
    return precision in ("fp16", "bf16", "fp8") and torch.device(device).type == "cuda"
