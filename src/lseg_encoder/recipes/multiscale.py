"""`lseg-multiscale`: the official LSeg evaluation procedure (RECIPES.md, `LSeg_MultiEvalModule`).

Per scale the image is resized so that its long side is `ceil(base_size * scale)`; small results are
padded to one `crop_size` square, large ones are covered by a sliding window of `crop_size` squares
(stride `int(crop_size * 2/3)`, overlaps averaged). Every crop is encoded with its mirror (features
SUMMED, not averaged) and upsampled 2x, and each scale is resized back to the image and added up.
The raw sum has a norm of about `2 * len(scales)` per pixel, so the default output is that sum made
unit per pixel; `raw=True` keeps the sum (RECIPES.md stores both).

Each crop goes through the same shared executor, so every crop of every scale (all are
`crop_size` squares) shares forward calls up to `max_batch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import (
    Plan,
    Recipe,
    RecipeError,
    check_crop,
    flip_sum,
    pad,
    published_input,
    resize,
    scaled_size,
    up2,
)

STRIDE_RATE = 2.0 / 3.0  # the evaluation module's sliding-window overlap
DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # LSeg's multi-scale evaluation


@dataclass
class _Scale:
    """Accumulator of one scale: the padded canvas (ph, pw), the resized image (height, width)."""

    height: int
    width: int
    ph: int
    pw: int
    remaining: int
    acc: torch.Tensor | None = None
    count: torch.Tensor | None = None


def windows(ph: int, pw: int, crop: int) -> list[tuple[int, int, int, int]]:
    """Sliding-window cells (h0, h1, w0, w1) over a (ph, pw) canvas, row-major like the original."""
    stride = int(crop * STRIDE_RATE)
    gh = math.ceil((ph - crop) / stride) + 1
    gw = math.ceil((pw - crop) / stride) + 1
    cells = []
    for i in range(gh):
        for j in range(gw):
            h0, w0 = i * stride, j * stride
            cells.append((h0, min(h0 + crop, ph), w0, min(w0 + crop, pw)))
    return cells


class _MultiscalePlan(Plan):
    def __init__(self, recipe: LsegMultiscale, image: np.ndarray):
        h, w = image.shape[:2]
        self.size = (h, w)
        self.flip = recipe.flip
        self.raw = recipe.raw
        crop = recipe.crop_size
        x = published_input(image, recipe.device)
        self.crops: list[torch.Tensor] = []
        self.where: list[tuple[int, tuple[int, int, int, int]]] = []
        self.scales: list[_Scale] = []
        for k, s in enumerate(recipe.scales):
            long = math.ceil(recipe.base_size * s)
            height, width = scaled_size(h, w, long)
            if height < 1 or width < 1:
                raise RecipeError(f"lseg-multiscale: scale {s} resizes the {h}x{w} image to {height}x{width}")
            short = width if h > w else height
            cur = resize(x, height, width)
            # One padded crop when the long side fits, else a window over the (padded if narrow) image.
            canvas = pad(cur, crop) if long <= crop or short < crop else cur
            ph, pw = canvas.shape[-2:]
            cells = [(0, crop, 0, crop)] if long <= crop else windows(ph, pw, crop)
            for cell in cells:
                h0, h1, w0, w1 = cell
                self.crops.append(pad(canvas[0, :, h0:h1, w0:w1], crop))
                self.where.append((k, cell))
            self.scales.append(_Scale(height, width, ph, pw, remaining=len(cells)))
        self.scores: torch.Tensor | None = None

    def add(self, index: int, plain: torch.Tensor, flipped: torch.Tensor | None) -> None:
        k, (h0, h1, w0, w1) = self.where[index]
        sc = self.scales[k]
        features = flip_sum(up2(plain), None if flipped is None else up2(flipped))
        if sc.acc is None:
            sc.acc = features.new_zeros((1, features.shape[1], sc.ph, sc.pw))
            sc.count = features.new_zeros((1, 1, sc.ph, sc.pw))
        sc.acc[:, :, h0:h1, w0:w1] += features[:, :, :h1 - h0, :w1 - w0]
        sc.count[:, :, h0:h1, w0:w1] += 1
        sc.remaining -= 1
        if sc.remaining == 0:  # scale complete: add it to the scores and free its canvas
            out = (sc.acc / sc.count)[:, :, :sc.height, :sc.width]
            sc.acc = sc.count = None
            score = resize(out, *self.size)
            self.scores = score if self.scores is None else self.scores + score

    def result(self) -> torch.Tensor:
        scores = self.scores
        return scores if self.raw else scores / scores.norm(dim=1, keepdim=True)


class LsegMultiscale(Recipe):
    """The official LSeg multi-scale + flip evaluation; see the module docstring."""

    name = "lseg-multiscale"

    def __init__(self, scales=DEFAULT_SCALES, base_size: int = 520, crop_size: int = 480, flip: bool = True,
                 raw: bool = False, **options):
        super().__init__(**options)
        try:
            self.scales = tuple(float(s) for s in scales)
        except (TypeError, ValueError):
            raise RecipeError(f"lseg-multiscale: scales must be numbers, got {scales!r}") from None
        if not self.scales:
            raise RecipeError("lseg-multiscale: scales is empty; give at least one scale, e.g. 1.0")
        if any(not math.isfinite(s) or s <= 0 for s in self.scales):
            raise RecipeError(f"lseg-multiscale: scales must be positive, got {list(self.scales)}")
        for name, value in (("base_size", base_size), ("crop_size", crop_size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise RecipeError(f"lseg-multiscale: {name} must be a positive integer, got {value!r}")
        self.base_size, self.crop_size = int(base_size), int(crop_size)
        check_crop(self.config, self.crop_size, "lseg-multiscale: crop_size")
        self.flip, self.raw = bool(flip), bool(raw)

    def recipe_params(self) -> dict:
        return {"scales": list(self.scales), "base_size": self.base_size, "crop_size": self.crop_size,
                "flip": self.flip, "raw": self.raw}

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return int(height), int(width)

    def plan(self, image: np.ndarray) -> Plan:
        return _MultiscalePlan(self, image)
