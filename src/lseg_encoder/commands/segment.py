"""`lseg-encoder segment`: label-prompted segmentation of one image to a PNG plus a JSON.

Runners come from `backends.make_runner(backend, ...)` (the one backend table), so every backend
the project has (torch, ONNX Runtime, TensorRT, ...) segments through the same code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_size_arg, add_weights_args, device_arg, resolve_weights
from .validate import add_max_pixels_arg


def make_runner(backend: str, weights: str, backbone: str | None = None, device: str = "cpu",
                size: tuple[int, int] = (384, 384)):
    """An inactive runner of any registered backend (`backends.BACKENDS`) for this checkpoint."""
    from ..backends import make_runner as runner_for_backend
    from ..weights.checkpoint import load_encoder

    return runner_for_backend(backend, load_encoder(weights, backbone=backbone), device=device, size=size)


def add_common_args(p) -> None:
    """Arguments shared by `segment` and `wordfree`."""
    add_weights_args(p)
    p.add_argument("--image", help="input image (default: the bundled sample image)")
    add_size_arg(p, "384", help="network input size")
    from ..backends import BACKENDS

    p.add_argument("--backend", default="torch", choices=list(BACKENDS),
                   help="runner that computes the image features (default torch)")
    p.add_argument("--device", type=device_arg, default="cpu")
    p.add_argument("--output", help="output PNG; a JSON with per-label fractions is written beside it "
                   "(default: reports/<command>/<image name>.png)")
    add_max_pixels_arg(p)


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment an image with a list of labels (PNG + JSON)")
    add_common_args(p)
    p.add_argument("--labels", required=True, help='comma-separated labels, e.g. "dog, grass, other"')
    p.set_defaults(func=run)


def write_outputs(image, result, output, meta: dict, title: str, max_legend: int = 20) -> tuple[Path, Path]:
    from ..reports.figures import render_segmentation
    from ..store.atomic import write_bytes_atomic

    png = Path(output)
    result.meta.update(meta)
    render_segmentation(image, result, png, title=title, max_legend=max_legend)
    js = png.with_suffix(".json")
    try:
        write_bytes_atomic(js, (json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    except BaseException:
        png.unlink(missing_ok=True)  # the pair is the result: no PNG without its JSON
        raise
    return png, js


def prepare(args, command: str):
    """Every check that needs no model, in order of cost; returns (output PNG, image path, config).

    Runs before the checkpoint is read and before any ONNX export or engine build, so bad input fails
    in well under a second with one line.
    """
    from ..preprocess import sample_image_path
    from .validate import (
        check_backend_can_execute,
        check_max_pixels,
        check_output_path,
        check_size_fits,
        default_output,
        planned_config,
    )

    check_max_pixels(args.max_pixels)
    image_path = args.image or sample_image_path()
    output = check_output_path(args.output or default_output(command, image_path), (".png",))
    check_output_path(output.with_suffix(".json"), (".json",))  # the JSON beside it
    check_backend_can_execute(args.backend, args.device)
    config = planned_config(args.weights, args.backbone)
    check_size_fits(config, args.size, args.device)
    return output, image_path, config


def describe(args, weights: str, runner, text_encoder, image_path, pil) -> dict:
    """Provenance for the JSON; `image_size` there is the displayed size (EXIF orientation applied)."""
    stored = pil.info.get("stored_size", (pil.width, pil.height))
    return {"image": str(image_path), "backbone": runner.config.name, "backend": runner.backend,
            "size": list(args.size), "weights": str(weights), "synthetic_weights": text_encoder.synthetic,
            "exif_orientation": pil.info.get("exif_orientation", 1), "stored_size": [stored[1], stored[0]]}


def run(args) -> int:
    from ..preprocess import load_image, preprocess
    from ..segment import parse_labels, segment_features
    from ..text import load_text_encoder

    labels = parse_labels(args.labels)  # cheap checks first: bad input fails before any loading
    output, image_path, _ = prepare(args, "segment")
    pil = load_image(image_path, args.max_pixels)
    weights = resolve_weights(args)
    text_encoder = load_text_encoder(weights)
    text = text_encoder.encode_text(labels)
    runner = make_runner(args.backend, weights, args.backbone, args.device, tuple(args.size))
    with runner:
        feats = runner.infer(preprocess(pil, args.size, runner.config))
    result = segment_features(feats, text, labels, (pil.height, pil.width))
    del feats
    meta = describe(args, weights, runner, text_encoder, image_path, pil)
    title = f"{runner.config.name} / {runner.backend}" + ("  (SYNTHETIC weights)" if meta["synthetic_weights"] else "")
    png, js = write_outputs(pil, result, output, meta, title)
    summary = ", ".join(f"{k} {100 * v:.1f}%" for k, v in result.fractions.items())
    print(f"wrote {png} and {js}: {summary}", file=sys.stderr)
    return 0
