"""Write N synthetic photo-like JPEGs (smooth colour fields plus noise) of one size into a folder:
the input of the extraction benchmark (`docs/extract.md`). Usage: bench_images.py DIR N HxW"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(folder: str, count: int, size: str) -> None:
    height, width = (int(v) for v in size.lower().split("x"))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    for i in range(count):
        a, b, c = rng.random(3) * 6
        base = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * (xx + yy))], axis=-1)
        noise = rng.normal(0, 0.08, (height, width, 3))
        pixels = np.clip((base * 0.4 + 0.5 + noise) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(out / f"{i:05d}.jpg", quality=90)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
