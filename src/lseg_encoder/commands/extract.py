"""`lseg-encoder extract INPUT... --out DIR`: features of folders, globs, lists and videos, resumable.

A thin layer over `lseg_encoder.extract.extract`; exit 0 when every item is done, 1 when some item
failed (each recorded in manifest.jsonl with its reason), 2 for a bad invocation.
"""

from __future__ import annotations

import argparse
import sys

from ..sizes import parse_size
from .common import add_size_arg, add_weights_args, device_arg, size_type


def _parse_scales(text: str) -> list[float]:
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --scales {text!r}; use e.g. 0.75,1.0,1.25") from None


def register(sub) -> None:
    p = sub.add_parser("extract", help="features of many images / video frames to one file each, resumable",
                       description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder (recursive), glob, @list.txt or video")
    p.add_argument("--out", help="output folder (required unless --sink none)")
    add_weights_args(p)
    g = p.add_argument_group("recipe")
    g.add_argument("--recipe", default="native", help="native (default), lseg-multiscale or openscene")
    add_size_arg(g, "480", help="native: input size")
    g.add_argument("--scales", type=_parse_scales, help="lseg-multiscale: comma-separated scales")
    g.add_argument("--base-size", type=int, help="lseg-multiscale: base size (default 520)")
    g.add_argument("--crop-size", type=int, help="lseg-multiscale: crop size (default 480)")
    g.add_argument("--no-flip", action="store_true", help="lseg-multiscale: no mirrored pass")
    g.add_argument("--raw", action="store_true", help="lseg-multiscale: keep the raw sum instead of unit features")
    g = p.add_argument_group("output")
    g.add_argument("--format", dest="fmt", default="npy", choices=("npy", "safetensors"))
    g.add_argument("--dtype", default="fp16", choices=("fp16", "fp32"))
    g.add_argument("--pca", type=int, metavar="K", help="store K-d features (basis fitted on a sample, pca.npz)")
    g.add_argument("--feature-size", type=size_type(parse_size), metavar="N|HxW", help="resize the stored features")
    g.add_argument("--sink", default="files", choices=("files", "none"), help="none: compute and discard (timing)")
    g.add_argument("--overwrite", action="store_true", help="replace a run of another configuration in --out")
    g = p.add_argument_group("video")
    g.add_argument("--every", type=int, metavar="N", help="every N-th frame")
    g.add_argument("--fps", type=float, metavar="F", help="about F frames per second")
    g = p.add_argument_group("execution")
    g.add_argument("--backend", help="default: compiled (fp16) on CUDA, torch (fp32) on CPU")
    g.add_argument("--device", type=device_arg, help="default: cuda when available, else cpu")
    g.add_argument("--devices", help="all | cuda:0,cuda:1: one process per GPU, one shared queue")
    g.add_argument("--batch", type=int, default=8, help="images (native) or crops per forward call (default 8)")
    g.add_argument("--workers", type=int, default=2, help="decode worker processes (default 2; 0 = in-process)")
    g.add_argument("--shard", metavar="i/N", help="process only shard i of N (deterministic by id)")
    g.add_argument("--engine", default="local", choices=("local", "ray"))
    g.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")
    g.add_argument("--max-pixels", type=int, default=50_000_000, help="refuse larger images (default 50 MP)")
    g.add_argument("--fail-fast", action="store_true", help="stop at the first failed item")
    g.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _recipe_for(args) -> tuple[str, dict]:
    """The seam between CLI flags and `lseg_encoder.recipes`: (recipe name, its parameters)."""
    multiscale = {"scales": args.scales, "base_size": args.base_size, "crop_size": args.crop_size,
                  "flip": False if args.no_flip else None, "raw": True if args.raw else None}
    if args.recipe != "lseg-multiscale":
        used = ["--" + k.replace("_", "-").replace("flip", "no-flip") for k, v in multiscale.items() if v is not None]
        if used:
            from ..errors import LsegError

            raise LsegError(f"{', '.join(used)} only apply to --recipe lseg-multiscale")
    if args.recipe == "native":
        return "native", {"size": list(args.size)}
    if args.recipe == "lseg-multiscale":
        return args.recipe, {k: v for k, v in multiscale.items() if v is not None}
    return args.recipe, {}


def run(args) -> int:
    from ..extract import extract

    recipe, options = _recipe_for(args)
    summary = extract(
        args.inputs, args.out, recipe=recipe, recipe_options=options, weights=args.weights, backbone=args.backbone,
        backend=args.backend, device=args.device, batch=args.batch, workers=args.workers, fmt=args.fmt,
        dtype=args.dtype, pca=args.pca, feature_size=args.feature_size, shard=args.shard, devices=args.devices,
        engine=args.engine, ray_address=args.ray_address, every=args.every, fps=args.fps, overwrite=args.overwrite,
        fail_fast=args.fail_fast, max_pixels=args.max_pixels, sink=args.sink, progress=not args.no_progress,
    )
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0
