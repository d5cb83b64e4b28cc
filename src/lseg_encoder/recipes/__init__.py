"""Feature recipes: how an image becomes per-pixel features (RECIPES.md of the shared reference set).

    from lseg_encoder.recipes import get_recipe
    recipe = get_recipe("lseg-multiscale", scales=(0.75, 1.25))
    feats = recipe.run(image, runner.infer)      # (512, h, w) float32 on the CPU
    recipe.params()                              # JSON-able, for run.json

`forward` is any callable from a normalised (B, 3, H, W) float32 batch to unit features
(B, 512, h, w): an encoder, or a runner's `infer`, so every recipe runs on every backend.
Every recipe also takes `backbone` (name or config; the size rules), `max_batch` (the most crops per
forward call), `device` (where resizing and padding of the input happen; CPU by default) and
`keep_on_device` (return the features where `forward` put them instead of on the CPU).
"""

from __future__ import annotations

from .base import Recipe, RecipeError
from .multiscale import LsegMultiscale
from .native import Native
from .openscene import OpenScene

RECIPES: dict[str, type[Recipe]] = {cls.name: cls for cls in (Native, LsegMultiscale, OpenScene)}


def get_recipe(name: str, **params) -> Recipe:
    """The recipe `name` with its parameters; unknown names or parameters raise RecipeError."""
    try:
        cls = RECIPES[name]
    except (KeyError, TypeError):
        raise RecipeError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
    try:
        return cls(**params)
    except TypeError as exc:  # an unexpected keyword: name it with what the recipe accepts
        import inspect

        accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "options")]
        accepted += [p for p in inspect.signature(Recipe.__init__).parameters if p != "self"]
        raise RecipeError(f"recipe {name!r}: {exc}; it takes {', '.join(accepted)}") from None


__all__ = ["RECIPES", "LsegMultiscale", "Native", "OpenScene", "Recipe", "RecipeError", "get_recipe"]
