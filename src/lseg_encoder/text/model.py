"""The CLIP ViT-B/32 text transformer in plain torch (openai/CLIP @ 04f4dc2, SPEC §9).

Parameter names are CLIP's own (`token_embedding.weight`, `transformer.resblocks.N.attn.in_proj_weight`,
...), so a checkpoint's `clip_pretrained.*` tensors load with a strict `load_state_dict` and nothing
needs a remapping table.

Numerics that matter (each moves features by >= 1e-3 if wrong): LayerNorm eps 1e-5 computed in
fp32, QuickGELU `z * sigmoid(1.702 z)`, causal attention, the EOT position = argmax of the ids.

Because attention is causal, the output at a position depends only on the tokens up to it. Two
consequences are used for speed and are exact up to float rounding:
* a batch only needs `max(EOT position) + 1` positions, not the padded 77 (`TextTransformer.forward`);
* the SOT position is identical for every prompt, so its per-layer keys/values can be computed once
  and shared (`PrefixCache`), and in the last block only the EOT query is needed
  (`TextTransformer.forward_same_length`, used for the 40k-word vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TextTowerConfig:
    width: int = 512
    layers: int = 12
    heads: int = 8
    context_length: int = 77
    vocab_size: int = 49408
    embed_dim: int = 512
    ln_eps: float = 1e-5


VITB32_TEXT = TextTowerConfig()


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """`nn.MultiheadAttention`'s parameters (fused [q; k; v] in-projection) with explicit math, so that
    cached prefix keys/values and a last-query-only pass are possible."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        n, length, width = t.shape
        return t.view(n, length, self.heads, width // self.heads).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        width = x.shape[-1]
        kv = F.linear(x, self.in_proj_weight[width:], self.in_proj_bias[width:])
        k, v = kv.split(width, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
                last_query_only: bool = False) -> torch.Tensor:
        """x (N, T, D). `prefix`: keys/values (1, H, P, hd) of P earlier positions shared by all rows.

        With `last_query_only`, only the final position is queried (returns (N, 1, D)).
        """
        n, length, width = x.shape
        k, v = self.project_kv(x)
        x_q = x[:, -1:] if last_query_only else x
        q = self._split(F.linear(x_q, self.in_proj_weight[:width], self.in_proj_bias[:width]))
        past = 0
        if prefix is not None:
            pk, pv = prefix
            past = pk.shape[2]
            k = torch.cat([pk.expand(n, -1, -1, -1), k], dim=2)
            v = torch.cat([pv.expand(n, -1, -1, -1), v], dim=2)
        if past == 0 and not last_query_only:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # query i (absolute position past + offset + i) sees keys 0..its own position
            first_query = past + (length - 1 if last_query_only else 0)
            rows = torch.arange(q.shape[2], device=q.device).unsqueeze(1) + first_query
            allowed = torch.arange(k.shape[2], device=q.device).unsqueeze(0) <= rows
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        out = out.transpose(1, 2).reshape(n, q.shape[2], width)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, config: TextTowerConfig):
        super().__init__()
        w = config.width
        self.ln_1 = nn.LayerNorm(w, eps=config.ln_eps)
        self.attn = Attention(w, config.heads)
        self.ln_2 = nn.LayerNorm(w, eps=config.ln_eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(w, 4 * w))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * w, w))

    def forward(self, x: torch.Tensor, prefix=None, last_query_only: bool = False) -> torch.Tensor:
        attn = self.attn(self.ln_1(x), prefix, last_query_only)
        x = (x[:, -1:] if last_query_only else x) + attn
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, config: TextTowerConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(config) for _ in range(config.layers))


@dataclass
class PrefixCache:
    """Per-block keys/values of a fixed prefix (the SOT token at position 0), shared by a batch."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def length(self) -> int:
        return self.kv[0][0].shape[2]


class TextTransformer(nn.Module):
    """CLIP's text tower: ids (N, L) -> un-normalised features (N, embed_dim) at the EOT position."""

    def __init__(self, config: TextTowerConfig = VITB32_TEXT):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.transformer = Transformer(config)
        self.ln_final = nn.LayerNorm(config.width, eps=config.ln_eps)
        self.text_projection = nn.Parameter(torch.empty(config.width, config.embed_dim))

    def _embed(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        return self.token_embedding(ids) + self.positional_embedding[start : start + ids.shape[1]]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (N, L) int64, zero-padded after EOT; L may be anything from max(EOT pos)+1 up to 77."""
        eot = ids.argmax(dim=-1)  # EOT (49407) is the largest id
        needed = int(eot.max()) + 1
        ids = ids[:, :needed]  # positions after the last EOT cannot influence it (causal mask)
        x = self._embed(ids)
        for block in self.transformer.resblocks:
            x = block(x)
        x = self.ln_final(x[torch.arange(x.shape[0]), eot])
        return x @ self.text_projection

    def prefix_cache(self, prefix_ids: torch.Tensor) -> PrefixCache:
        """Keys/values of each block for a prefix (1, P) that every prompt of a batch starts with."""
        x = self._embed(prefix_ids)
        kv = []
        for block in self.transformer.resblocks:
            kv.append(block.attn.project_kv(block.ln_1(x)))
            x = block(x)
        return PrefixCache(kv)

    def forward_same_length(self, ids: torch.Tensor, prefix: PrefixCache) -> torch.Tensor:
        """Prompts that all end with EOT at the last column and all start with `prefix`'s tokens.

        `ids` (N, L) are the tokens *after* the prefix. Returns the same features as `forward` on the
        full prompts, with the shared prefix computed once and only the EOT query in the last block.
        """
        x = self._embed(ids, start=prefix.length)
        blocks = self.transformer.resblocks
        for i, block in enumerate(blocks):
            x = block(x, prefix.kv[i], last_query_only=i == len(blocks) - 1)
        return self.ln_final(x[:, -1]) @ self.text_projection
