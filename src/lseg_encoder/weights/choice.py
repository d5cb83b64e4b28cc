"""Which weights a command or an API call will use, decided before anything heavy is loaded.

Without a checkpoint every entry point falls back to the cached synthetic weights of the reference
fill rule and says so loudly; with one, the backbone is read from the checkpoint's keys (the tensors
stay memory-mapped on disk), so sizes can be checked before the model is built.
"""

from __future__ import annotations

import sys

DEFAULT_BACKBONE = "clip_vitl16_384"


def resolve_weights(weights: str | None, backbone: str | None = None, *, flag: str = "weights") -> str:
    """The checkpoint path to use; the synthetic one, with a warning on stderr, when none is given."""
    if weights:
        return str(weights)
    from .synthetic import default_synthetic_checkpoint

    backbone = backbone or DEFAULT_BACKBONE
    print(f"warning: no {flag} given: using SYNTHETIC {backbone} weights (reference fill rule), "
          "not a trained model", file=sys.stderr)
    return str(default_synthetic_checkpoint(backbone))


def planned_backbone(weights: str | None, backbone: str | None = None) -> str:
    """The backbone that loading `weights` will build, from the checkpoint's keys only."""
    if backbone:
        return backbone
    if not weights:
        return DEFAULT_BACKBONE
    from .checkpoint import infer_backbone, read_checkpoint

    return infer_backbone(read_checkpoint(weights).state_dict)
