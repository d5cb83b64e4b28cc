"""`native`: one pass at a fixed size, exactly what `lseg-encoder features` does.

The image is resized to `size` (ignoring aspect ratio) and normalised by the project's own
`preprocess` (Pillow bilinear, the backbone config's mean/std), then encoded once. The output is the
encoder's, unchanged: unit features at the backbone's output size for `size` (240x240 for 480 on
ViT-L/16), not at the image size. Batching images of one size together is what makes it fast.
"""

from __future__ import annotations

import numpy as np
import torch

from ..preprocess import as_hw, preprocess
from ..sizes import check_size
from .base import Plan, Recipe, RecipeError


class _NativePlan(Plan):
    def __init__(self, recipe: Native, image: np.ndarray):
        x = preprocess(image, recipe.size, recipe.config)
        self.crops = [x[0].to(recipe.device) if recipe.device is not None else x[0]]
        self.flip = False
        self.out: torch.Tensor | None = None

    def add(self, index: int, plain: torch.Tensor, flipped: torch.Tensor | None) -> None:
        self.out = plain

    def result(self) -> torch.Tensor:
        return self.out


class Native(Recipe):
    """One forward at `size` (an int N or (H, W)); see the module docstring."""

    name = "native"

    def __init__(self, size=(480, 480), **options):
        super().__init__(**options)
        try:
            self.size = as_hw(size)
        except (TypeError, ValueError):
            raise RecipeError(f"native: size must be N or (H, W), got {size!r}") from None
        check_size(self.config, *self.size)

    def recipe_params(self) -> dict:
        return {"size": list(self.size)}

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.config.output_size(*self.size)

    def plan(self, image: np.ndarray) -> Plan:
        return _NativePlan(self, image)
