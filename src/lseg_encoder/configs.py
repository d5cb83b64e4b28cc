"""Architecture configs: small dataclasses in a registry, one entry per LSeg backbone.

The real configs are what users load (`clip_vitl16_384` for demo_e200.ckpt / fss_l16.ckpt,
`clip_vitb32_384`, `clip_resnet101` for fss_rn101.ckpt). `tiny` is the same ViT architecture with a
few narrow layers, so that export, engine and runner tests run fast on two CPU cores; it is never a
default for users.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

VIT_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class ReadoutLevel:
    """One DPT reassemble level: 1x1 conv to `channels`, then an optional resample.

    `resample` is ("up", k) for a ConvTranspose2d(k, stride k), ("down", 2) for a 3x3 stride-2 conv,
    or None.
    """

    channels: int
    resample: tuple[str, int] | None


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    heads: int
    patch: int
    pos_grid: int  # side of the pretrained position-embedding grid (24 for 384 px / 16 px patches)
    taps: tuple[int, ...]  # 0-based blocks whose outputs feed the decoder
    levels: tuple[ReadoutLevel, ...]
    mlp_ratio: int = 4
    ln_eps: float = 1e-6


@dataclass(frozen=True)
class ResNetConfig:
    blocks: tuple[int, int, int, int] = (3, 4, 23, 3)
    width: int = 64


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    backbone: ViTConfig | ResNetConfig
    features: int = 256
    out_dim: int = 512
    mean_std: tuple[tuple[float, float, float], tuple[float, float, float]] = VIT_MEAN_STD
    layout: str | None = None  # package-data layout file of the official checkpoint, if any
    synthetic_only: bool = False

    @property
    def is_vit(self) -> bool:
        return isinstance(self.backbone, ViTConfig)

    @property
    def stride(self) -> int:
        """Input pixels per grid cell that the size rule is stated in."""
        return self.backbone.patch if self.is_vit else 32

    @property
    def level_channels(self) -> tuple[int, ...]:
        if self.is_vit:
            return tuple(level.channels for level in self.backbone.levels)
        w = self.backbone.width
        return (4 * w, 8 * w, 16 * w, 32 * w)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature-map size for an input size (after `check_size`)."""
        if self.is_vit:
            p = self.backbone.patch
            up = 8 if p == 16 else 16  # decoder upsamples the /16 (/32) grid by 8 (16)
            return up * (height // p), up * (width // p)
        return height // 2, width // 2

    def size_rule(self) -> str:
        if not self.is_vit:
            return "H and W divisible by 32 (output H/2 x W/2)"
        p = self.backbone.patch
        if self.needs_even_grid:
            return f"H//{p} and W//{p} even, i.e. H, W in [32k, 32k+15] (output 8*(H//16) x 8*(W//16))"
        return f"H, W >= {p} (output 16*(H//{p}) x 16*(W//{p}))"

    @property
    def needs_even_grid(self) -> bool:
        """ViT variants whose 4th level downsamples by 2 need an even patch grid (SPEC §4)."""
        return self.is_vit and any(lv.resample == ("down", 2) for lv in self.backbone.levels)


def _vitl16_levels(scale: int = 1) -> tuple[ReadoutLevel, ...]:
    return (
        ReadoutLevel(256 // scale, ("up", 4)),
        ReadoutLevel(512 // scale, ("up", 2)),
        ReadoutLevel(1024 // scale, None),
        ReadoutLevel(1024 // scale, ("down", 2)),
    )


CONFIGS: dict[str, EncoderConfig] = {}


def register(config: EncoderConfig) -> EncoderConfig:
    """Add a config to the registry (users may register their own variants)."""
    CONFIGS[config.name] = config
    return config


clip_vitl16_384 = register(
    EncoderConfig(
        name="clip_vitl16_384",
        backbone=ViTConfig(
            embed_dim=1024, depth=24, heads=16, patch=16, pos_grid=24, taps=(5, 11, 17, 23),
            levels=_vitl16_levels(),
        ),
        layout="clip_vitl16_384.json",
    )
)

clip_vitb32_384 = register(
    EncoderConfig(
        name="clip_vitb32_384",
        backbone=ViTConfig(
            embed_dim=768, depth=12, heads=12, patch=32, pos_grid=12, taps=(2, 5, 8, 11),
            levels=(
                ReadoutLevel(96, ("up", 8)),
                ReadoutLevel(192, ("up", 4)),
                ReadoutLevel(384, ("up", 2)),
                ReadoutLevel(768, None),
            ),
        ),
        layout="clip_vitb32_384.json",
    )
)

clip_resnet101 = register(
    EncoderConfig(
        name="clip_resnet101",
        backbone=ResNetConfig(),
        mean_std=IMAGENET_MEAN_STD,
        layout="clip_resnet101.json",
    )
)

tiny = register(
    EncoderConfig(
        name="tiny",
        backbone=ViTConfig(
            embed_dim=64, depth=4, heads=2, patch=16, pos_grid=24, taps=(0, 1, 2, 3),
            levels=_vitl16_levels(scale=16),
        ),
        features=32,
        synthetic_only=True,
    )
)


def get_config(name: str) -> EncoderConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        from .errors import LsegError

        raise LsegError(f"unknown backbone {name!r}; known: {', '.join(sorted(CONFIGS))}") from None


def replace(config: EncoderConfig, **changes) -> EncoderConfig:
    return dataclasses.replace(config, **changes)
