"""Decode one item to RGB uint8 pixels, in a loader worker, refusing what should not be decoded.

The pixel budget is checked on the header (Pillow reads the size without decoding), so a 1-gigapixel
file is refused in microseconds instead of exhausting memory. Every failure becomes an
`ItemFailure` with a one-line reason; the pipeline records it and goes on.
"""

from __future__ import annotations

import numpy as np

from ..errors import LsegError
from .inputs import Item


class ItemFailure(LsegError):
    """One item could not be processed; the message is the reason recorded in the manifest."""


def read_image(path: str, max_pixels: int | None) -> np.ndarray:
    """The project's one image reader (`images`: header-checked pixel budget, EXIF orientation, every
    mode converted by its documented rule); its one-line error, without the path, is the reason."""
    from ..errors import ImageError
    from ..images import read_image_file

    try:
        rgb = read_image_file(path, max_pixels or None)
    except ImageError as exc:
        raise ItemFailure(str(exc).removeprefix(f"{path}: ")) from None
    return np.array(rgb, dtype=np.uint8)  # writable: torch.from_numpy warns on read-only arrays


def resize_rgb(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize exactly as `preprocess` does (Pillow, antialiased when shrinking)."""
    from PIL import Image

    h, w = size
    if pixels.shape[:2] == (h, w):
        return pixels
    return np.array(Image.fromarray(pixels, "RGB").resize((w, h), Image.BILINEAR), dtype=np.uint8)


class Decoder:
    """Item -> uint8 (H, W, 3); `size` resizes (the native recipe), None keeps the image as it is."""

    def __init__(self, size: tuple[int, int] | None, max_pixels: int | None):
        self.size = size
        self.max_pixels = max_pixels
        self._frames = None

    def __call__(self, item: Item) -> np.ndarray:
        if item.error:
            raise ItemFailure(item.error)
        if item.is_video_frame:
            if self._frames is None:
                from .video import FrameCache

                self._frames = FrameCache()
            try:
                pixels = self._frames.read(item.source, item.frame)
            except LsegError as exc:
                raise ItemFailure(str(exc)) from None
            except Exception as exc:  # PyAV's error tree: a corrupt stream mid-video
                raise ItemFailure(f"cannot decode frame {item.frame} ({exc.__class__.__name__}: {exc})") from None
        else:
            pixels = read_image(item.source, self.max_pixels)
        return resize_rgb(pixels, self.size) if self.size else pixels
