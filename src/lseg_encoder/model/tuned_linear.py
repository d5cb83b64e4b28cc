"""The transformer blocks' Linears on the op of `kernels.lt_linear` (issue 13), an inference rewrite.

Each block's qkv, proj, fc1 and fc2 become `TunedLinear`s: the same weights, run by
`lseg_lt::linear`, whose cuBLASLt algorithm `kernels.lt_linear.tune` chose per shape. An fc1 with
the GELU epilogue (`gelu_epilogue.EpilogueGeluMlp`) keeps it: the op's `gelu` runs cuBLASLt's
GELU+bias epilogue, as `torch._addmm_activation` does. Used by `CompiledRunner(tuned_gemms=True)`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kernels.lt_linear import Shape, linear
from .gelu_epilogue import EpilogueGeluMlp
from .kernel_attention import KernelAttention
from .swap import swap_children
from .vit import Attention, Mlp

_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


class TunedLinear(nn.Module):
    """`nn.Linear` (with tanh GELU after it where `gelu`) as `lseg_lt::linear`."""

    def __init__(self, inner: nn.Linear, gelu: bool = False):
        super().__init__()
        if inner.bias is None:
            raise ValueError("TunedLinear needs a Linear with a bias (cuBLASLt's bias epilogue)")
        self.weight = inner.weight
        self.bias = inner.bias
        self.gelu = gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, self.gelu)

    def shape_for(self, x: torch.Tensor) -> Shape:
        """The GEMM this module runs for input `x`, as `kernels.lt_linear.tune` takes it."""
        n, k = self.weight.shape
        return Shape(x.numel() // k, n, k, self.gelu, _DTYPE_NAMES[self.weight.dtype])


class TunedGeluMlp(nn.Module):
    """`fc2(gelu(fc1(x)))` with fc1 and the GELU in one op call, as `EpilogueGeluMlp` has them."""

    def __init__(self, mlp: EpilogueGeluMlp):
        super().__init__()
        self.fc1 = TunedLinear(mlp.fc1, gelu=True)
        self.fc2 = TunedLinear(mlp.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


def use_tuned_linears(model: nn.Module) -> int:
    """Swap every block's four Linears for `TunedLinear`s in place (after the gelu-epilogue and
    kernel-attention rewrites, whose modules it knows); returns how many Linears."""
    count = 2 * swap_children(model, EpilogueGeluMlp, TunedGeluMlp)
    for module in list(model.modules()):
        if isinstance(module, (Attention, KernelAttention)):
            module.qkv, module.proj = TunedLinear(module.qkv), TunedLinear(module.proj)
            count += 2
        elif isinstance(module, Mlp):  # exact GELU stays in Mlp.forward
            module.fc1, module.fc2 = TunedLinear(module.fc1), TunedLinear(module.fc2)
            count += 2
    return count


@torch.inference_mode()
def gemm_shapes(forward, x: torch.Tensor, model: nn.Module) -> list[Shape]:
    """The distinct GEMMs `model`'s TunedLinears run when `forward(x)` runs once, eagerly, in order."""
    seen: dict[Shape, None] = {}
    hooks = [m.register_forward_pre_hook(lambda module, args: seen.setdefault(module.shape_for(args[0])))
             for m in model.modules() if isinstance(m, TunedLinear)]
    try:
        forward(x)
    finally:
        for hook in hooks:
            hook.remove()
    return list(seen)
