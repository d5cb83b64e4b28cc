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
    logits = pixel_logits(image_features, text_features)
    logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
    if image_size is not None and tuple(image_size) != tuple(logits.shape[-2:]):
        logits = F.interpolate(logits, size=tuple(image_size), mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)


def label_fractions(label_map: np.ndarray, labels: list[str]) -> dict[str, float]:
    counts = np.bincount(label_map.ravel(), minlength=len(labels))
    return {label: float(c) / label_map.size for label, c in zip(labels, counts)}


@dataclass
class Segmentation:
    """One image's result; `label_map[y, x]` indexes `labels`, at the original image size."""

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
    label_map = label_maps(image_features, text_features, image_size)[0].numpy().astype(np.int32)
    return Segmentation(list(labels), label_map, label_fractions(label_map, labels))


def segment_image(runner, text_encoder, image, labels: str | list[str], size) -> Segmentation:
    """Image + labels -> Segmentation, with any active runner (torch, ONNX Runtime, TensorRT, ...)."""
    from .preprocess import load_image, preprocess

    labels = parse_labels(labels)
    text = text_encoder.encode_text(labels)  # validates length before the image work
    pil = load_image(image)
    feats = runner.infer(preprocess(pil, size, runner.config))
    result = segment_features(feats, text, labels, (pil.height, pil.width))
    return result
