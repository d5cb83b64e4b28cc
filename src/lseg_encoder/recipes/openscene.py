"""`openscene`: OpenScene's ScanNet feature extraction (RECIPES.md, pengsongyou/lseg_feature_extraction).

The image is upscaled so that its long side is `crop = 2 * max(h, w)` (ScanNet 320x240 -> 640x480),
padded to a `crop` square and encoded once plainly and once mirrored; the two unit feature maps are
SUMMED and not renormalised (OpenScene casts that to fp16 and averages over views itself). There is
no `up2`: the encoder halves the 2x upscaled image, so feature pixel (i, j) lies on image pixel (i, j)
and the output is the top-left (h, w) of the features.

That alignment only holds when the encoder's features are exactly half the crop, i.e. for ViT-L/16
when `max(h, w)` is a multiple of 16; other images are refused with the nearest sizes that work
rather than given shifted features.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import Plan, Recipe, RecipeError, flip_sum, half_resolution, pad, published_input, resize, scaled_size


class _OpenScenePlan(Plan):
    def __init__(self, recipe: OpenScene, image: np.ndarray):
        h, w = image.shape[:2]
        self.size = (h, w)
        self.flip = True
        crop = recipe.crop_for(h, w)
        cur = resize(published_input(image, recipe.device), *scaled_size(h, w, crop))
        self.crops = [pad(cur, crop)[0]]
        self.out: torch.Tensor | None = None

    def add(self, index: int, plain: torch.Tensor, flipped: torch.Tensor | None) -> None:
        h, w = self.size
        self.out = flip_sum(plain, flipped)[:, :, :h, :w]

    def result(self) -> torch.Tensor:
        return self.out


class OpenScene(Recipe):
    """OpenScene's single-scale, flip-summed extraction; see the module docstring."""

    name = "openscene"

    def recipe_params(self) -> dict:
        return {}

    def crop_for(self, height: int, width: int) -> int:
        crop = 2 * max(int(height), int(width))
        if not half_resolution(self.config, crop):
            fits = [m for m in range(1, max(height, width) + 8 * self.config.stride)
                    if half_resolution(self.config, 2 * m)]
            below = [m for m in fits if m < max(height, width)][-1:]
            above = [m for m in fits if m > max(height, width)][:1]
            raise RecipeError(
                f"openscene: a {height}x{width} image needs crop {crop}, whose {self.config.name} features are not "
                f"exactly half of it; resize the image so its long side is {' or '.join(map(str, below + above))}")
        return crop

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        self.crop_for(height, width)
        return int(height), int(width)

    def plan(self, image: np.ndarray) -> Plan:
        return _OpenScenePlan(self, image)
