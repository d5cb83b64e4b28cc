"""The LSeg image encoder in plain torch (no timm/torchvision; see the package README for why)."""

from .encoder import LSegEncoder, build_encoder, normalize_channels

__all__ = ["LSegEncoder", "build_encoder", "normalize_channels"]
