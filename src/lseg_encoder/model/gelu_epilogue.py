"""fc1 + bias + GELU as one cuBLASLt GEMM with a GELU epilogue (`torch._addmm_activation`), issue 13.

Why: in the compiled fp16 path Inductor runs fc1 as a cuBLAS GEMM and then a separate Triton kernel
for bias + GELU, which reads and writes the (tokens x 4096) hidden activation once more: 0.6 ms of
the 9.95 ms forward at 910 px on the H100. Inductor keeps `aten._addmm_activation` as an extern
call (no decomposition), so the GEMM writes GELU(x W^T + b) directly.

The catch: cuBLASLt's GELU epilogue is the tanh approximation, where the model uses exact (erf)
GELU; the difference is at most ~5e-4 per activation. It became the default for fp16/bf16 on CUDA
(`gelu_epilogue_default`) only after the H100 showed it inside the fp16 row of the tolerance table,
in the same run as the timing (scripts/gpu_levers.py, docs/benchmarks.md). On CPU the op runs the
exact GELU, so CPU tests check the plumbing, not the approximation.
"""

from __future__ import annotations

import torch
from torch import nn

from ..precisions import half_on_cuda
from .swap import swap_children
from .vit import Mlp


class EpilogueGeluMlp(nn.Module):
    """`fc2(gelu(fc1(x)))` with fc1 and the GELU in one `_addmm_activation` call."""

    def __init__(self, mlp: Mlp):
        super().__init__()
        self.fc1 = mlp.fc1
        self.fc2 = mlp.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        hidden = torch._addmm_activation(self.fc1.bias, x.reshape(-1, x.shape[-1]), self.fc1.weight.t(),
                                         use_gelu=True)
        return self.fc2(hidden.reshape(*lead, -1))


def use_gelu_epilogue(model: nn.Module) -> int:
    """Swap every transformer block's Mlp for `EpilogueGeluMlp` in place; returns how many."""
    return swap_children(model, Mlp, EpilogueGeluMlp)


def gelu_epilogue_default(precision: str, device: str | torch.device) -> bool:
    """The compiled fp16/bf16 paths on CUDA use the epilogue by default (compiled runner and AOTI
    packages alike, so C++ and Python run the same graph): on the H100 it cut 2-4 % of the forward
    at 260-910 px and kept the fp16 row of the tolerance table (docs/benchmarks.md, 2026-11-25).
    Elsewhere it buys nothing: CPUs run the exact GELU inside the same op anyway."""
    return half_on_cuda(precision, device)
