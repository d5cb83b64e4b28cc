"""fp8 (E4M3) GEMMs for the ViT's big Linear layers, through `torch._scaled_mm` (issue 13).

Why: about two thirds of the fp16 forward is GEMMs in the 24 transformer blocks (qkv, proj, fc1,
fc2), and Hopper's fp8 tensor cores run at twice the fp16 rate. Scaling keeps the error small:
- weights: one scale per output channel (amax / 448), quantised once at build time;
- activations: one scale per token (row), computed on the fly; Inductor fuses the amax and the
  cast into one kernel before each GEMM.
The GEMM accumulates in fp32 and applies both scales and the bias in its epilogue. Everything else
(attention, LayerNorm, the decoder) stays in the encoder's low precision. Whether the result is
faithful enough is decided by the tolerance table on the GPU, never assumed here.
"""

from __future__ import annotations

import torch
from torch import nn

from .vit import Attention, Mlp

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) -> E4M3 values and the (M, 1) fp32 scales with x ~= values * scales."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-12)
    scale = amax / E4M3_MAX
    return (x.float() / scale).to(E4M3), scale


class Fp8Linear(nn.Module):
    """y = x W^T + b with W and x in E4M3 (row-wise scales), y in `out_dtype`.

    `out_dtype` is the encoder's compute dtype; where the GEMM cannot write it (cuBLAS row-wise
    scaling wrote only bf16 before CUDA 12.9), `gemm_dtype=torch.bfloat16` writes bf16 and casts.
    """

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype = torch.float16,
                 gemm_dtype: torch.dtype | None = None):
        super().__init__()
        w = linear.weight.detach().float()
        values, scale = quantize_rows(w)  # per output channel
        self.out_dtype = out_dtype
        self.gemm_dtype = gemm_dtype or out_dtype
        self.register_buffer("weight_fp8", values)  # (N, K) row-major = K x N column-major for _scaled_mm
        self.register_buffer("weight_scale", scale.reshape(1, -1).contiguous())  # (1, N)
        bias = linear.bias.detach().to(self.gemm_dtype) if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        a, a_scale = quantize_rows(x.reshape(-1, x.shape[-1]))
        y = torch._scaled_mm(a, self.weight_fp8.t(), scale_a=a_scale, scale_b=self.weight_scale, bias=self.bias,
                             out_dtype=self.gemm_dtype)
        return y.to(self.out_dtype).reshape(*lead, -1)


def use_fp8_linears(model: nn.Module, out_dtype: torch.dtype, gemm_dtype: torch.dtype | None = None) -> int:
    """Replace the qkv/proj/fc1/fc2 Linears of every transformer block in place; returns how many."""
    count = 0
    for module in model.modules():
        names = ("qkv", "proj") if isinstance(module, Attention) else ("fc1", "fc2") if isinstance(module, Mlp) else ()
        for name in names:
            setattr(module, name, Fp8Linear(getattr(module, name), out_dtype, gemm_dtype))
            count += 1
    return count


def fp16_gemm_output_supported(device: torch.device) -> bool:
    """Whether this device's row-wise scaled GEMM writes fp16 (a 16x16 probe)."""
    a = torch.ones(16, 16, device=device).to(E4M3)
    ones_a = torch.ones(16, 1, device=device)
    ones_b = torch.ones(1, 16, device=device)
    try:
        torch._scaled_mm(a, a.t(), scale_a=ones_a, scale_b=ones_b, out_dtype=torch.float16)
    except RuntimeError:
        return False
    return True
