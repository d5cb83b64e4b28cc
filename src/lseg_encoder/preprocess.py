"""Image loading and the official input normalisation.

Resize policy: the image is resized to exactly the requested (H, W) with bilinear filtering
(Pillow, antialiased when shrinking), ignoring aspect ratio, as the LSeg demo feeds a fixed-size
square; an int `size` means (size, size). Features come out at the backbone's output size for
(H, W); `segment` maps labels back to the original image size. Sizes outside the backbone's rule are
refused up front with the nearest valid sizes (see `sizes.check_size`).

Normalisation: ViT checkpoints mean = std = 0.5 (pixels to [-1, 1]); the ResNet-101 zero-shot
checkpoints ImageNet mean/std.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

from . import images
from .configs import EncoderConfig, get_config
from .images import DEFAULT_MAX_PIXELS
from .sizes import check_size


def sample_image_path() -> Path:
    """The bundled sample image (Chelsea the cat, CC0; see data/NOTICE.md)."""
    return Path(str(resources.files("lseg_encoder").joinpath("data", "sample_cat.jpg")))


def load_image(image, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> PIL.Image.Image:  # noqa: F821
    """A path, PIL image or numpy array -> RGB uint8 PIL image; the rules live in `images`."""
    return images.load_image(image, max_pixels)


def as_hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def preprocess(image, size, backbone: str | EncoderConfig = "clip_vitl16_384") -> torch.Tensor:
    """Image -> normalised (1, 3, H, W) float32 tensor for the encoder."""
    config = get_config(backbone) if isinstance(backbone, str) else backbone
    h, w = as_hw(size)
    check_size(config, h, w)
    from PIL import Image

    pil = load_image(image).resize((w, h), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in config.mean_std)
    return ((x - mean) / std).unsqueeze(0).contiguous()
