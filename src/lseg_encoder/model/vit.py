"""ViT backbone of LSeg (timm `vit_large_patch16_384` numerics) with explicitly returned taps.

Reference: Ranftl et al., "Vision Transformers for Dense Prediction" (DPT), and LSeg (Li et al.,
ICLR 2022), which reuses DPT's ViT-L/16 backbone. Numerics follow `../shared/reference/SPEC.md` §2-3:
LayerNorm eps 1e-6, exact GELU, qkv rows [q|k|v], and a *bilinear* (align_corners=False) resize of
the 24x24 position-embedding grid computed from the input shape on every call, so that one traced
graph is correct at every size. Taps are returned from `forward_intermediates`; there are no hooks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import ReadoutLevel, ViTConfig


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the activation dtype (a no-op cast in fp32 graphs).

    In fp16 the variance of 1024 channels loses precision; exporting this op as one fp32
    LayerNormalization node is what keeps fp16 ViT engines from collapsing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        # Set by the ONNX exporter: spell attention out with the softmax in fp32, because exported
        # SDPA decomposes into a softmax of the activation dtype. Eager/compiled keep fused SDPA.
        self.explicit_fp32_softmax = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.explicit_fp32_softmax:
            scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
            out = scores.float().softmax(dim=-1).to(v.dtype) @ v
        else:
            # SDPA's default scale is head_dim**-0.5, as in timm; fused kernels on GPU.
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, eps: float):
        super().__init__()
        self.norm1 = LayerNorm32(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = LayerNorm32(dim, eps=eps)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class VisionTransformer(nn.Module):
    """The transformer trunk. The final `norm` and the classifier `head` of the checkpoint are not
    built: LSeg computes and discards them (SPEC §2.2), so the loader ignores those keys."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pos_grid**2, dim))
        self.blocks = nn.ModuleList(
            Block(dim, cfg.heads, cfg.mlp_ratio, cfg.ln_eps) for _ in range(max(cfg.taps) + 1)
        )

    def resized_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """Bilinear (align_corners=False, no antialias) resize of the grid part; exact identity at
        the pretrained grid size."""
        g = self.cfg.pos_grid
        cls_pos, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = grid.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bilinear", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([cls_pos, grid], dim=1)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Token sequences (B, 1+N, C), CLS first, after each tapped block (before any norm)."""
        t = self.patch_embed.proj(x)  # rows/cols beyond patch*grid are ignored by the stride
        gh, gw = t.shape[-2], t.shape[-1]
        t = t.flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        t = t + self.resized_pos_embed(gh, gw)
        taps = []
        for index, block in enumerate(self.blocks):
            t = block(t)
            if index in self.cfg.taps:
                taps.append(t)
        return taps


class Readout(nn.Module):
    """DPT reassemble with the "project" readout: concat(patch token, CLS) -> Linear -> GELU, then
    tokens back to a (gh, gw) map, a 1x1 conv and an optional up/down resample."""

    def __init__(self, dim: int, level: ReadoutLevel):
        super().__init__()
        self.project = nn.Linear(2 * dim, dim)
        self.conv = nn.Conv2d(dim, level.channels, kernel_size=1)
        kind = level.resample[0] if level.resample else None
        if kind == "up":
            k = level.resample[1]
            self.resample = nn.ConvTranspose2d(level.channels, level.channels, kernel_size=k, stride=k)
        elif kind == "down":
            self.resample = nn.Conv2d(level.channels, level.channels, kernel_size=3, stride=2, padding=1)
        else:
            self.resample = nn.Identity()

    def projected(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1+N, C) tokens -> (B, N, C) rows: each patch token with the CLS token, projected."""
        patch = tokens[:, 1:]
        cls = tokens[:, :1].expand_as(patch)
        return F.gelu(self.project(torch.cat([patch, cls], dim=-1)))  # patch first, CLS second

    def forward(self, tokens: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        h = self.projected(tokens)
        h = h.transpose(1, 2).reshape(h.shape[0], h.shape[2], gh, gw)
        return self.resample(self.conv(h))


class ViTBackbone(nn.Module):
    """Checkpoint prefix `pretrained.`: the trunk under `model`, reassemble layers under `readouts`."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.model = VisionTransformer(cfg)
        self.readouts = nn.ModuleDict({str(i + 1): Readout(cfg.embed_dim, lv) for i, lv in enumerate(cfg.levels)})

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        gh, gw = x.shape[-2] // self.cfg.patch, x.shape[-1] // self.cfg.patch
        tokens = self.model.forward_intermediates(x)
        layers = [readout(t, gh, gw) for readout, t in zip(self.readouts.values(), tokens)]
        return tokens, layers
