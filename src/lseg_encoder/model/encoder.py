"""The LSeg image encoder: backbone -> DPT decoder -> head1 -> L2 normalisation over channels.

Module names mirror the official checkpoint after the Lightning `net.` prefix, except the DPT
reassemble layers, whose `nn.Sequential` indices are renamed by `CHECKPOINT_KEY_MAP` (an anchored
pattern table, applied by the loader and inverted for writing).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..configs import EncoderConfig
from ..sizes import check_size
from .decoder import Decoder
from .resnet import ResNetBackbone
from .vit import ViTBackbone

# checkpoint key (without `net.`) -> module key
CHECKPOINT_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^pretrained\.act_postprocess(\d)\.0\.project\.0\.", r"pretrained.readouts.\1.project."),
    (r"^pretrained\.act_postprocess(\d)\.3\.", r"pretrained.readouts.\1.conv."),
    (r"^pretrained\.act_postprocess(\d)\.4\.", r"pretrained.readouts.\1.resample."),
)
# checkpoint keys the official checkpoints carry that the image encoder deliberately does not use
IGNORED_CHECKPOINT_KEYS: tuple[str, ...] = (
    r"^clip_pretrained\.",              # CLIP ViT-B/32 (text tower used by the text encoder)
    r"^pretrained\.model\.norm\.",      # final ViT norm: computed and discarded by LSeg
    r"^pretrained\.model\.head\.",      # ImageNet classifier
    r"^scratch\.refinenet4\.resConfUnit1\.",  # refinenet4 has a single input
)
_INVERSE_KEY_MAP = (
    (r"^pretrained\.readouts\.(\d)\.project\.", r"pretrained.act_postprocess\1.0.project.0."),
    (r"^pretrained\.readouts\.(\d)\.conv\.", r"pretrained.act_postprocess\1.3."),
    (r"^pretrained\.readouts\.(\d)\.resample\.", r"pretrained.act_postprocess\1.4."),
)


def checkpoint_to_module_key(key: str) -> str:
    for pattern, repl in CHECKPOINT_KEY_MAP:
        key, n = re.subn(pattern, repl, key)
        if n:
            break
    return key


def module_to_checkpoint_key(key: str) -> str:
    for pattern, repl in _INVERSE_KEY_MAP:
        key, n = re.subn(pattern, repl, key)
        if n:
            break
    return key


def is_ignored_checkpoint_key(key: str) -> bool:
    return any(re.match(p, key) for p in IGNORED_CHECKPOINT_KEYS)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


class LSegEncoder(nn.Module):
    """`encoder(x)`: x (B,3,H,W) normalised -> (B, out_dim, h, w) unit-norm per pixel."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.pretrained = ViTBackbone(config.backbone) if config.is_vit else ResNetBackbone(config.backbone)
        self.scratch = Decoder(config.level_channels, config.features, config.out_dim)
        self.synthetic = False  # set by the loader for checkpoints written by `synthetic_checkpoint`
        self.source: str | None = None
        self.autograd = False  # True: keep gradients in eval mode too (saliency, input optimisation)

    def forward_intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage the reference set summarises: tokens_k (ViT), layer_k, path_k, head1, output."""
        if not _tracing():
            check_size(self.config, int(x.shape[-2]), int(x.shape[-1]))
        tokens, layers = self.pretrained(x)
        paths, head = self.scratch(layers)
        out = {f"tokens_{i}": t for i, t in enumerate(tokens, 1)}
        out.update({f"layer_{i}": t for i, t in enumerate(layers, 1)})
        out.update({f"path_{i}": t for i, t in enumerate(paths, 1)})
        out["head1"] = head
        out["output"] = normalize_channels(head)
        return out

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """head1 output before normalisation (what low-precision wrappers run in fp16)."""
        if not _tracing():
            check_size(self.config, int(x.shape[-2]), int(x.shape[-1]))
        _, layers = self.pretrained(x)
        _, head = self.scratch(layers)
        return head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm features. In eval mode (as `load_encoder` returns it) this runs without autograd
        unless `autograd` is set: the result is a plain tensor (`.numpy()` works) and no activations
        are kept for a backward pass (~30 % less memory). Train mode and tracing are unaffected."""
        if self.training or self.autograd or _tracing() or not torch.is_grad_enabled():
            return normalize_channels(self.forward_head(x))
        with torch.no_grad():
            return normalize_channels(self.forward_head(x))

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict under checkpoint key names (without `net.`)."""
        return {module_to_checkpoint_key(k): v for k, v in self.state_dict().items()}


def normalize_channels(x: torch.Tensor) -> torch.Tensor:
    """Plain division by the channel L2 norm (no eps), as LSeg does. Always computed and returned in
    fp32: in fp16 the sum of 512 squares can overflow, and unit vectors rounded to fp16 would cost
    fidelity for nothing (this is one of the fp32 islands of the fp16 graphs)."""
    xf = x.float()
    return xf / xf.norm(dim=1, keepdim=True)


def build_encoder(config: EncoderConfig | str) -> LSegEncoder:
    from ..configs import get_config

    config = get_config(config) if isinstance(config, str) else config
    return LSegEncoder(config).eval()
