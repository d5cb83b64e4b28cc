"""`lseg-encoder features`: per-pixel features of one image to a .npy file."""

from __future__ import annotations

import sys

from .common import add_size_arg, add_weights_args, resolve_weights


def register(sub) -> None:
    p = sub.add_parser("features", help="extract (512, h, w) features of one image to .npy")
    add_weights_args(p)
    p.add_argument("--image", help="input image (default: the bundled sample image)")
    add_size_arg(p, "480")
    p.add_argument("--output", required=True, help="output .npy (float32, shape (512, h, w))")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..preprocess import preprocess, sample_image_path
    from ..store.atomic import ensure_writable_parent, save_npy_atomic
    from ..weights.checkpoint import load_encoder

    ensure_writable_parent(args.output)  # a folder in the way fails now, not after the forward pass
    weights = resolve_weights(args)
    encoder = load_encoder(weights, backbone=args.backbone, device=args.device)
    x = preprocess(args.image or sample_image_path(), args.size, encoder.config)
    with torch.inference_mode():
        feats = encoder(x.to(args.device))[0].float().cpu().numpy()
    save_npy_atomic(args.output, feats)
    label = " (SYNTHETIC weights)" if encoder.synthetic else ""
    print(f"wrote {args.output}: {feats.shape} float32 from {encoder.config.name}{label}", file=sys.stderr)
    return 0
