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


# -- the one spelling of sizes and shapes, shared by the CLI, the tests and the engine builder --------
Size = tuple[int, int]  # (height, width)
Shape = tuple[int, int, int]  # (batch, height, width) of a static artefact


def _ints(text: str, what: str, form: str) -> list[int]:
    try:
        parts = [int(p) for p in str(text).strip().lower().split("x")]
    except ValueError:
        raise InputSizeError(f"bad {what} {text!r}; use {form}") from None
    if min(parts) <= 0:
        raise InputSizeError(f"bad {what} {text!r}: every number must be positive ({form})")
    return parts


def parse_size(text: str | int | Size) -> Size:
    """'480' -> (480, 480); '320x480' -> (320, 480) (height x width). The CLI's `--size N|HxW`."""
    if isinstance(text, tuple):
        return int(text[0]), int(text[1])
    parts = _ints(str(text), "size", "N or HxW, e.g. 480 or 320x480")
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise InputSizeError(f"bad size {text!r}; use N or HxW, e.g. 480 or 320x480")
    return parts[0], parts[1]


def parse_sizes(texts) -> list[Size]:
    """`--sizes 260 320x480` or '260,320x480' -> [(260, 260), (320, 480)]."""
    if isinstance(texts, str):
        texts = [t for t in texts.replace(",", " ").split() if t]
    return [parse_size(t) for t in texts]


def parse_shape(text: str | Shape) -> Shape:
    """'2x384x384' -> (2, 384, 384): the one form of a static artefact's input shape (BxHxW)."""
    if isinstance(text, tuple):
        return int(text[0]), int(text[1]), int(text[2])
    parts = _ints(str(text), "shape", "BxHxW, e.g. 1x384x384")
    if len(parts) != 3:
        raise InputSizeError(f"bad shape {text!r}; use BxHxW (batch x height x width), e.g. 1x384x384")
    return parts[0], parts[1], parts[2]


def size_name(size: Size) -> str:
    """(320, 480) -> '320x480' (file names, report keys)."""
    return f"{size[0]}x{size[1]}"


def size_label(size: Size) -> str:
    """(480, 480) -> '480'; (320, 480) -> '320x480' (table rows, plot ticks)."""
    return str(size[0]) if size[0] == size[1] else size_name(size)
