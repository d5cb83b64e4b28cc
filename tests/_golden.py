"""Summaries of our tensors in the reference set's formats (computed in float64), and tolerances.

See tests/data/README.md. Tolerances are the reference README's: the final output within 5e-6
max-abs; intermediates within 1e-4 * max|reference| of the same array; recipe outputs (RECIPES.md:
several chained resizes) within 1e-4 max-abs on `pixels` and `proj16`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data" / "reference"
OUTPUT_ATOL = 5e-6
INTERMEDIATE_RTOL = 1e-4
RECIPE_ATOL = 1e-4


@cache
def reference(case: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{case}.npz") as z:
        return {k: z[k] for k in z.files}


@cache
def projection(channels: int) -> np.ndarray:
    with np.load(DATA / "projection_vectors.npz") as z:
        return z[f"C{channels}"]


def reference_input(ref: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(ref["input_seed"]))
    return torch.rand(*[int(s) for s in ref["input_shape"]], generator=g, dtype=torch.float32) * 2 - 1


def summaries(name: str, tensor: torch.Tensor, ref: dict) -> dict[str, np.ndarray]:
    """Our summaries for every array the reference stores under `name.`."""
    t = tensor[0].detach().double().numpy()
    out = {}
    if t.ndim == 2:  # tokens (1+N, C)
        out[f"{name}.proj16"] = projection(t.shape[1]) @ t.T
        out[f"{name}.cls"] = t[0]
        out[f"{name}.tokmean"] = t.mean(axis=0)  # over all 1+N tokens, CLS included
    else:
        c, h, w = t.shape
        p = np.einsum("kc,chw->khw", projection(c), t)
        out[f"{name}.proj16"] = p
        h4, w4 = h // 4, w // 4
        out[f"{name}.proj16_pool4"] = p[:, : h4 * 4, : w4 * 4].reshape(16, h4, 4, w4, 4).mean(axis=(2, 4))
        out[f"{name}.chanmean"] = t.mean(axis=(1, 2))
        if f"{name}.pixel_pos" in ref:
            out[f"{name}.pixels"] = np.stack([t[:, i, j] for i, j in ref[f"{name}.pixel_pos"]])
    flat = t.ravel()
    out[f"{name}.stats"] = np.array([flat.mean(), flat.std(ddof=1), flat.min(), flat.max()])
    return {k: v for k, v in out.items() if k in ref}
