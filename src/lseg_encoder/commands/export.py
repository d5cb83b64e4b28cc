"""`lseg-encoder export`: checkpoint -> validated ONNX (fp32 or fp16, dynamic or static)."""

from __future__ import annotations

from .common import add_shape_arg, add_size_arg, add_weights_args, resolve_weights


def register(sub) -> None:
    p = sub.add_parser("export", help="export the encoder to ONNX and validate it with ONNX Runtime")
    add_weights_args(p)
    p.add_argument("--output", help="output .onnx (default: models/onnx_engines/lseg_img_enc_<backbone>_<ckpt>.onnx)")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    add_shape_arg(p, "--static", help="static input shape BxHxW, e.g. 1x384x384 (default: dynamic B, H, W)")
    add_size_arg(p, "384", help="trace/check size of a dynamic export")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (17..23, default 18)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the ONNX Runtime validation against PyTorch (on by default)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import LsegError
    from ..export.onnx import default_onnx_path
    from ..loaders import export_validated
    from ..store.fingerprint import sha256_file
    from ..weights.checkpoint import load_encoder
    from .common import say
    from .validate import check_output_path, check_size_fits, planned_config

    # everything that needs no model first: a bad argument fails before the checkpoint load and trace
    if not 17 <= args.opset <= 23:
        raise LsegError(f"--opset must be in 17..23, got {args.opset}")
    batch, *size = args.static or (1, *args.size)
    config = planned_config(args.weights, args.backbone)
    check_size_fits(config, tuple(size), "cpu", batch=batch)
    output = args.output or default_onnx_path(config.name, args.weights or None, args.precision, args.static)
    check_output_path(output, (".onnx",))
    weights = resolve_weights(args)
    encoder = load_encoder(weights, backbone=args.backbone)
    export_validated(
        encoder, output, precision=args.precision, opset=args.opset, dynamic=args.static is None,
        batch=batch, size=tuple(size), check=args.check, checkpoint_sha256=sha256_file(weights), progress=say,
    )
    print(output)
    return 0
