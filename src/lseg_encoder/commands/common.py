"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import sys

from ..configs import CONFIGS


def add_weights_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="LSeg checkpoint (.ckpt/.pt/.pth/.safetensors); "
                        "omitted: clearly-labelled SYNTHETIC weights (cached)")
    parser.add_argument("--backbone", choices=sorted(CONFIGS), help="backbone (default: inferred from the "
                        "checkpoint; clip_vitl16_384 for synthetic weights)")


def resolve_weights(args) -> str:
    """The checkpoint path to use; warns loudly when falling back to synthetic weights."""
    if args.weights:
        return args.weights
    from ..weights.synthetic import default_synthetic_checkpoint

    backbone = args.backbone or "clip_vitl16_384"
    print(f"warning: no --weights given: using SYNTHETIC {backbone} weights (reference fill rule), "
          "not a trained model", file=sys.stderr)
    return str(default_synthetic_checkpoint(backbone))


def parse_size(text: str) -> tuple[int, int]:
    """'480' or '320x480' -> (H, W)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use N or HxW") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use N or HxW")
    return parts[0], parts[1]
