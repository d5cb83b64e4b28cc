"""In-place swaps of submodules of one kind, for the inference rewrites that wrap a block's part
(`gelu_epilogue` wraps each Mlp, `kernel_attention` each Attention)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def swap_children(model: nn.Module, kind: type[nn.Module], wrap: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every submodule of `model` that is a `kind` by `wrap(it)`, in place; returns how many.
    The targets are collected first, so a wrapper that keeps the original inside is not visited."""
    targets = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children() if isinstance(child, kind)]
    for parent, name, child in targets:
        setattr(parent, name, wrap(child))
    return len(targets)
