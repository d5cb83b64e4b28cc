"""Label-prompted segmentation from image features of any backend plus text features.

This is LSeg's head after the exported encoder (SPEC §7), kept outside every runner so that torch,
ONNX Runtime and TensorRT features are segmented by the same code:

1. logits = (1/0.07) * <pixel feature, unit text feature>. The scale is a fixed constant in LSeg
   (not CLIP's learnt `logit_scale`); it does not change the argmax but keeps logits comparable
   with the original. LSeg computes this product in fp16 on CUDA; we stay in fp32.
2. bilinear x2 upsample, align_corners=True (LSeg's `output_conv`), giving the network input size;
3. bilinear resize to the original image size (align_corners=False), so the label map lines up
   with the user's image rather than with the square network input;
4. argmax over labels, and the fraction of pixels each label wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LabelError

LOGIT_SCALE = 1.0 / 0.07
RESULT_SCHEMA = "lseg-encoder/segmentation/v1"


def parse_labels(labels: str | list[str]) -> list[str]:
    """'dog, grass, other' or a list -> cleaned label list; refuses empty and duplicate labels.

    Duplicates are compared case- and whitespace-insensitively, because CLIP lower-cases and
    collapses whitespace: 'Dog' and 'dog ' would be the same prompt and split one region in two.
    """
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    cleaned = [re.sub(r"\s+", " ", str(item)).strip() for item in items]
    if not any(cleaned):
        raise LabelError("empty label list; give labels like --labels \"dog, grass, other\"")
    if "" in cleaned:
        raise LabelError(f"empty label in {labels!r} (check for doubled or trailing commas)")
    seen: dict[str, str] = {}
    for label in cleaned:
        key = label.lower()
        if key in seen:
            raise LabelError(f"duplicate label {label!r} (same as {seen[key]!r} for CLIP)")
        seen[key] = label
    return cleaned


def pixel_logits(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) image features, (N, C) text features -> (B, N, h, w) logits.

    Image features are used as the backend returns them (the encoder already L2-normalises them);
    text features are normalised here, which is idempotent for `encode_text` output.
    """
    if image_features.dim() != 4 or text_features.dim() != 2 or image_features.shape[1] != text_features.shape[1]:
        raise ValueError(f"feature shapes do not match: image {tuple(image_features.shape)}, "
                         f"text {tuple(text_features.shape)}")
    text = text_features.float()
    text = text / text.norm(dim=-1, keepdim=True)
    return LOGIT_SCALE * torch.einsum("bchw,nc->bnhw", image_features.float(), text)


def label_maps(image_features: torch.Tensor, text_features: torch.Tensor,
               image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, H, W) int64 label indices at `image_size` (H, W) (default: the x2-upsampled size)."""
    logits = upsampled_logits(image_features, text_features)
    size = tuple(image_size) if image_size is not None else tuple(logits.shape[-2:])
    return torch.stack([torch.from_numpy(resized_argmax(item, size)[0].astype(np.int64)) for item in logits])


@torch.inference_mode()
def upsampled_logits(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Steps 1-2: (B, N, 2h, 2w) logits at the network input resolution (small: feature-map size)."""
    logits = pixel_logits(image_features, text_features)
    return F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)


def _bilinear_taps(n_in: int, n_out: int):
    """Source indices and weights of `F.interpolate(mode="bilinear", align_corners=False)` on one axis."""
    src = ((torch.arange(n_out, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    return i0, (i0 + 1).clamp(max=n_in - 1), src - i0


def label_dtype(n_labels: int) -> np.dtype:
    """The smallest unsigned type that indexes `n_labels` (uint8 up to 256: 1 byte per image pixel)."""
    return np.dtype(np.uint8 if n_labels <= 256 else np.uint16 if n_labels <= 65536 else np.int32)


@torch.inference_mode()
def resized_argmax(logits: torch.Tensor, size: tuple[int, int], tile_bytes: int = 32 << 20):
    """Step 3-4 in bounded memory: (N, h, w) logits -> (label map at `size`, per-label pixel counts).

    The bilinear resize (align_corners=False, as `F.interpolate`) and the argmax are done a band of
    output rows at a time, so memory stays ~`tile_bytes` whatever the image size: a 50 MP image
    with 3 labels would otherwise need 600 MB of logits plus the int64 argmax (400 MB). The map is
    uint8 for up to 256 labels.
    """
    n, h, w = logits.shape
    height, width = size
    out = np.empty((height, width), dtype=label_dtype(n))
    counts = np.zeros(n, dtype=np.int64)
    logits = logits.float()
    if (h, w) == (height, width):
        rows_at, cols_at = None, None
    else:
        rows_at, cols_at = _bilinear_taps(h, height), _bilinear_taps(w, width)
    band = max(1, tile_bytes // (4 * max(1, n) * max(w, width) * 3))
    for y in range(0, height, band):
        sl = slice(y, min(height, y + band))
        if rows_at is None:
            values = logits[:, sl]
        else:
            (r0, r1, fy), (c0, c1, fx) = (t[sl] for t in rows_at), cols_at
            rows = logits[:, r0] * (1 - fy)[None, :, None] + logits[:, r1] * fy[None, :, None]  # (N, t, w)
            values = rows[:, :, c0] * (1 - fx) + rows[:, :, c1] * fx  # (N, t, W)
        best = values.argmax(dim=0).numpy()
        out[sl] = best
        counts += np.bincount(best.ravel(), minlength=n)
    return out, counts


def label_fractions(label_map: np.ndarray, labels: list[str]) -> dict[str, float]:
    counts = np.bincount(label_map.ravel(), minlength=len(labels))
    return {label: float(c) / label_map.size for label, c in zip(labels, counts)}


@dataclass
class Segmentation:
    """One image's result; `label_map[y, x]` indexes `labels` (uint8 for up to 256 labels), at the size
    of the image as displayed (EXIF orientation applied)."""

    labels: list[str]
    label_map: np.ndarray
    fractions: dict[str, float]
    meta: dict = field(default_factory=dict)  # backbone, backend, size, weights, synthetic...

    def to_json(self) -> dict:
        h, w = self.label_map.shape
        return {"schema": RESULT_SCHEMA, "kind": "labels", "image_size": [h, w], "labels": self.labels,
                "fractions": self.fractions, **self.meta}


def segment_features(image_features: torch.Tensor, text_features: torch.Tensor, labels: list[str],
                     image_size: tuple[int, int]) -> Segmentation:
    """Segment one image (features (1, C, h, w)) into `labels`; label map at `image_size` (H, W)."""
    if image_features.shape[0] != 1:
        raise ValueError("segment_features takes one image; use label_maps for a batch")
    if len(labels) != text_features.shape[0]:
        raise ValueError(f"{len(labels)} labels but {text_features.shape[0]} text features")
    logits = upsampled_logits(image_features, text_features)[0]
    label_map, counts = resized_argmax(logits, tuple(image_size))
    fractions = {label: float(c) / label_map.size for label, c in zip(labels, counts)}
    return Segmentation(list(labels), label_map, fractions)


def segment_image(runner, text_encoder, image, labels: str | list[str], size) -> Segmentation:
    """Image + labels -> Segmentation, with any active runner (torch, ONNX Runtime, TensorRT, ...)."""
    from .preprocess import load_image, preprocess

    labels = parse_labels(labels)
    text = text_encoder.encode_text(labels)  # validates length before the image work
    pil = load_image(image)
    feats = runner.infer(preprocess(pil, size, runner.config))
    result = segment_features(feats, text, labels, (pil.height, pil.width))
    return result
