"""Every image the project reads goes through `load_image`: one place decides what the pixels are.

Why one module: Pillow's `convert("RGB")` is wrong for several modes (16-bit greyscale clips to
white, alpha is dropped so transparent areas show whatever colour they store), and the EXIF
orientation of phone photos is not applied. The rules here, in one place:

- Orientation: the EXIF orientation tag is applied (`ImageOps.exif_transpose`), so the image,
  the label map and the reported `image_size` are the *displayed* image, as a viewer shows it.
- Size: images above `max_pixels` (default `DEFAULT_MAX_PIXELS`, 50 MP) are refused from the
  header, before any pixel is decoded; Pillow's own decompression-bomb checks give the same line.
- Modes -> RGB uint8:
  - `1`, `L`, `RGB`, `YCbCr`, `LAB`, `HSV`: Pillow's conversion (exact for these).
  - 16-bit greyscale (`I;16`, `I;16L`, `I;16B`, `I;16N`) and `I` (32-bit int, which Pillow uses for
    16-bit samples): clipped to [0, 65535], then the high byte (`v >> 8`), i.e. the full 16-bit
    range maps onto the full 8-bit range. 16-bit RGB PNGs are decoded by Pillow to their high bytes,
    which is the same rule.
  - `F` (32-bit float): values within [0, 1] are intensities, scaled by 255 and rounded; any other
    range (depth, radiance) is stretched linearly from its minimum to its maximum (a constant
    image becomes black).
  - Alpha (`LA`, `RGBA`, `PA`, `P` with a transparent colour, premultiplied `La`/`RGBa`):
    composited over WHITE, `round((c * a + 255 * (255 - a)) / 255)`, as a web page or an image
    viewer would show the picture; transparent areas do not turn into a hard black shape.
  - `CMYK`: `R = round((255 - C) * (255 - K) / 255)` and likewise G (M), B (Y), the naive inversion
    without a colour profile (Pillow undoes Adobe's inverted CMYK JPEGs while decoding).
- Arrays: HxWx3 uint8 only (an array has no mode to say what its values mean).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import ImageError

DEFAULT_MAX_PIXELS = 50_000_000
BACKGROUND = 255  # alpha composites over white (see the module docstring)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _rgb(array: np.ndarray):
    from PIL import Image

    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), "RGB")


def sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """16-bit (or wider int) samples -> uint8 by the high byte, after clipping to [0, 65535]."""
    return (np.clip(values, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)


def float_to_eight(values: np.ndarray) -> np.ndarray:
    """Float samples -> uint8: [0, 1] scaled by 255, any other range stretched min..max."""
    values = np.nan_to_num(values.astype(np.float64))
    lo, hi = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if lo < 0.0 or hi > 1.0:
        values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def composite_over_background(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 (straight alpha) -> HxWx3 uint8 composited over `BACKGROUND`, rounded."""
    colour = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:4].astype(np.uint32)
    return ((colour * alpha + BACKGROUND * (255 - alpha) + 127) // 255).astype(np.uint8)


def cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    ink = 255 - cmyk.astype(np.uint32)
    return ((ink[:, :, :3] * ink[:, :, 3:4] + 127) // 255).astype(np.uint8)


def has_alpha(im) -> bool:
    return im.mode in ("LA", "La", "RGBA", "RGBa", "PA") or (im.mode == "P" and "transparency" in im.info)


def to_rgb8(im):
    """Any Pillow image -> RGB uint8 Pillow image by the rules in the module docstring."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in _SIXTEEN_BIT or mode == "I":
        return _rgb(sixteen_to_eight(np.asarray(im)))
    if mode == "F":
        return _rgb(float_to_eight(np.asarray(im)))
    if mode == "CMYK":
        return _rgb(cmyk_to_rgb(np.asarray(im)))
    if has_alpha(im):
        return _rgb(composite_over_background(np.asarray(im.convert("RGBA"))))
    return im.convert("RGB")


def array_to_rgb8(array: np.ndarray):
    """An HxWx3 uint8 array -> RGB image. Nothing else: an array carries no mode, so whether floats
    mean [0, 1] or [0, 255], or 2 channels grey+alpha, cannot be known; wrap it in a Pillow image of
    the right mode (`Image.fromarray(a, "I;16")`, ...) to use the rules above."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"expected an HxWx3 array, got shape {array.shape}; for other layouts pass a PIL image "
                         "of the right mode")
    if array.dtype != np.uint8:
        raise ImageError(f"expected a uint8 array, got {array.dtype}; for 16-bit or float pixels pass a PIL image "
                         "of mode I;16 or F")
    return _rgb(array)


def _too_large(what: str, width: int, height: int, max_pixels: int) -> ImageError:
    pixels = width * height
    return ImageError(f"{what}: image is {width}x{height} = {pixels} pixels, over --max-pixels {max_pixels} "
                      f"({pixels / 1e6:.1f} MP > {max_pixels / 1e6:g} MP); pass a larger --max-pixels "
                      "(max_pixels=) if this machine has the memory, or downscale the image")


def check_pixels(what: str, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise _too_large(what, width, height, max_pixels)


def read_image_file(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Open, check the header size, decode, apply EXIF orientation and convert to RGB uint8.

    The returned image's `info` carries `stored_size` (W, H as stored) and `exif_orientation` (1 when
    absent), so results can report both what was stored and what was shown.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image file not found" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            with Image.open(path) as im:
                check_pixels(str(path), im.width, im.height, max_pixels)  # header only, nothing decoded
                stored = im.size
                orientation = int(im.getexif().get(0x0112, 1) or 1)
                im.load()
                rgb = to_rgb8(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: refused as a decompression bomb by Pillow ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: cannot decode image (not an image format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {detail})") from None
    rgb.info.update(stored_size=stored, exif_orientation=orientation)
    return rgb


def load_image(image, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """A path, Pillow image or numpy array -> RGB uint8 Pillow image (displayed orientation)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        check_pixels("image", image.width, image.height, max_pixels)
        if image.mode == "RGB" and "stored_size" in image.info:
            return image  # already loaded by this module
        return to_rgb8(image)
    if isinstance(image, np.ndarray):
        if image.ndim >= 2:
            check_pixels("image array", image.shape[1], image.shape[0], max_pixels)
        return array_to_rgb8(image)
    if isinstance(image, (str, Path)):
        return read_image_file(image, max_pixels)
    raise ImageError(f"expected an image path, PIL image or numpy array, got {type(image).__name__}")
