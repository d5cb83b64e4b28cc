"""Deterministic synthetic weights with the real checkpoint layout.

Official LSeg checkpoints and CLIP weights cannot be downloaded here, so every test and the default
main job run on weights defined by the reference set's fill rule: each tensor is a function of its
checkpoint key and shape only. The same rule produced `../shared/reference`, so our encoder run on
these weights must reproduce the official code's outputs to float32 rounding.

Synthetic checkpoints are always labelled: the Lightning dict carries `SYNTHETIC_MARKER`, the loader
reports it, and the CLI warns.
"""

from __future__ import annotations

import json
import math
import zlib
from functools import cache
from importlib import resources
from pathlib import Path

import torch

from ..configs import EncoderConfig, get_config
from ..store.atomic import atomic_path

SYNTHETIC_MARKER = "lseg_encoder_synthetic"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}


def fill_value(key: str, shape, offset: int = 0) -> torch.Tensor:
    """The reference fill rule, bit-exact (float32 ops in the documented order)."""
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    if leaf == "logit_scale":
        return torch.full(shape, math.log(1.0 / 0.07), dtype=torch.float32)
    g = torch.Generator(device="cpu")
    g.manual_seed(zlib.crc32(key.encode("utf-8")) + offset)
    z = (torch.rand(shape, generator=g, dtype=torch.float32) * 2.0 - 1.0) * math.sqrt(3.0)
    if leaf == "running_mean":
        return z * 0.1
    if leaf == "running_var":
        return z.abs() * 0.1 + 1.0
    if leaf in ("pos_embed", "positional_embedding", "cls_token", "class_embedding"):
        return z * 0.02
    if len(shape) == 1:
        return z * 0.1 + 1.0 if leaf == "weight" else z * 0.1
    fan_in = math.prod(shape[1:])
    return z * (1.0 / math.sqrt(fan_in))


@cache
def _packaged_layout(filename: str) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    text = resources.files("lseg_encoder").joinpath("data", "layouts", filename).read_text()
    return tuple((k, tuple(shape), dtype) for k, shape, dtype in json.loads(text)["keys"])


def text_tower_layout() -> list[tuple[str, tuple[int, ...], str]]:
    """CLIP ViT-B/32 text-tower keys (identical in every LSeg checkpoint)."""
    visual = "net.clip_pretrained.visual."
    return [row for row in _packaged_layout("clip_vitl16_384.json")
            if row[0].startswith("net.clip_pretrained.") and not row[0].startswith(visual)]


def checkpoint_layout(config: EncoderConfig | str) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) of every tensor in a checkpoint of this backbone, in state-dict order.

    Real backbones use the official layout shipped as package data. Configs without one (`tiny`)
    get their own image-path keys plus the real CLIP text tower, so text tests run on them too.
    """
    config = get_config(config) if isinstance(config, str) else config
    if config.layout:
        return list(_packaged_layout(config.layout))
    from ..model import build_encoder

    model = build_encoder(config)
    rows = [(f"net.{k}", tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in model.checkpoint_state_dict().items()]
    return rows + text_tower_layout()


def synthetic_state_dict(
    config: EncoderConfig | str, offset: int = 0, *, checkpoint_dtypes: bool = True,
    include=lambda key: True,
) -> dict[str, torch.Tensor]:
    """All tensors of a synthetic checkpoint, keys with the Lightning `net.` prefix.

    With `checkpoint_dtypes`, tensors are cast to the dtype the real checkpoint stores (CLIP
    Conv/Linear/MHA tensors fp16); the values are always filled in float32 first.
    """
    out = {}
    for key, shape, dtype in checkpoint_layout(config):
        if not include(key):
            continue
        value = fill_value(key, shape, offset)
        out[key] = value.to(_DTYPES[dtype]) if checkpoint_dtypes else value
    return out


def synthetic_checkpoint(path: str | Path, backbone: str = "clip_vitl16_384", offset: int = 0) -> Path:
    """Write a Lightning-format checkpoint filled by the reference rule (atomically)."""
    config = get_config(backbone)
    ckpt = {
        "state_dict": synthetic_state_dict(config, offset),
        "epoch": 0,
        "global_step": 0,
        SYNTHETIC_MARKER: {"backbone": config.name, "offset": int(offset),
                           "note": "SYNTHETIC weights (reference fill rule), not a trained model"},
    }
    path = Path(path)
    nbytes = sum(t.numel() * t.element_size() for t in ckpt["state_dict"].values())
    with atomic_path(path, expected_bytes=nbytes) as tmp:
        torch.save(ckpt, tmp)
    return path


def default_synthetic_checkpoint(backbone: str = "clip_vitl16_384", offset: int = 0) -> Path:
    """The cached synthetic checkpoint used when no `--weights` is given (written once per cache)."""
    from ..store.cache import cached_artifact

    key = {"backbone": backbone, "offset": int(offset), "fill_rule": "reference README"}
    return cached_artifact("synthetic", key, lambda tmp: synthetic_checkpoint(tmp, backbone, offset), ".ckpt",
                           name=f"synthetic_{backbone}_offset{offset}.ckpt")
