"""`lseg-encoder features`: per-pixel features of one image to a .npy file."""

from __future__ import annotations

import sys

from .common import add_size_arg, add_weights_args, device_arg, resolve_weights
from .validate import add_max_pixels_arg


def register(sub) -> None:
    p = sub.add_parser("features", help="extract (512, h, w) features of one image to .npy")
    add_weights_args(p)
    p.add_argument("--image", help="input image (default: the bundled sample image)")
    add_size_arg(p, "480")
    p.add_argument("--output", required=True, help="output .npy (float32, shape (512, h, w))")
    p.add_argument("--device", type=device_arg, default="cpu")
    add_max_pixels_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..preprocess import load_image, preprocess, sample_image_path
    from ..store.atomic import save_npy_atomic
    from ..weights.checkpoint import load_encoder
    from .validate import (
        check_backend_can_execute,
        check_max_pixels,
        check_output_path,
        check_size_fits,
        planned_config,
    )

    # everything that needs no model first: a bad argument fails before the checkpoint is read
    check_max_pixels(args.max_pixels)
    check_output_path(args.output, (".npy",))
    check_backend_can_execute("torch", args.device)
    check_size_fits(planned_config(args.weights, args.backbone), args.size, args.device)
    pil = load_image(args.image or sample_image_path(), args.max_pixels)
    weights = resolve_weights(args)
    encoder = load_encoder(weights, backbone=args.backbone, device=args.device)
    x = preprocess(pil, args.size, encoder.config)
    with torch.inference_mode():
        feats = encoder(x.to(args.device))[0].float().cpu().numpy()
    save_npy_atomic(args.output, feats)
    label = " (SYNTHETIC weights)" if encoder.synthetic else ""
    print(f"wrote {args.output}: {feats.shape} float32 from {encoder.config.name}{label}", file=sys.stderr)
    return 0
