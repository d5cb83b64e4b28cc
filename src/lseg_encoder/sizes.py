"""The input-size rule of each backbone, checked up front with a useful message.

The official architecture fails deep inside a conv or at a fusion add for some sizes (ViT-L/16 with
an odd `H//16`, RN101 with H or W not divisible by 32). We refuse those sizes before running anything
and name the nearest sizes that work.
"""

from __future__ import annotations

from .configs import EncoderConfig
from .errors import InputSizeError


def is_valid_side(config: EncoderConfig, n: int) -> bool:
    if config.is_vit:
        grid = n // config.backbone.patch
        if grid < 1:
            return False
        return grid % 2 == 0 if config.needs_even_grid else True
    return n >= 32 and n % 32 == 0


def nearest_valid_sides(config: EncoderConfig, n: int) -> list[int]:
    """The closest valid side at or below `n` and the closest above it."""
    below = next((m for m in range(n, 0, -1) if is_valid_side(config, m)), None)
    above = next(m for m in range(n + 1, n + 10 * config.stride) if is_valid_side(config, m))
    return [m for m in (below, above) if m is not None]


def check_size(config: EncoderConfig, height: int, width: int) -> None:
    """Raise InputSizeError naming the nearest valid sizes if (height, width) cannot be processed."""
    bad = [(name, n) for name, n in (("height", height), ("width", width)) if not is_valid_side(config, int(n))]
    if not bad:
        return
    hints = "; ".join(f"{name} {n}: try {' or '.join(map(str, nearest_valid_sides(config, int(n))))}"
                      for name, n in bad)
    raise InputSizeError(
        f"input size {height}x{width} is not supported by {config.name} "
        f"(rule: {config.size_rule()}); {hints}"
    )


def round_to_valid(config: EncoderConfig, n: int) -> int:
    """The nearest valid side to `n` (ties go up), for resize policies that pick a size."""
    options = nearest_valid_sides(config, n)
    return min(options, key=lambda m: (abs(m - n), -m))
