"""`lseg-encoder export`: checkpoint -> validated ONNX (fp32 or fp16, dynamic or static)."""

from __future__ import annotations

from .common import add_weights_args, parse_size, resolve_weights


def register(sub) -> None:
    p = sub.add_parser("export", help="export the encoder to ONNX and validate it with ONNX Runtime")
    add_weights_args(p)
    p.add_argument("--output", help="output .onnx (default: models/onnx_engines/lseg_img_enc_<backbone>_<ckpt>.onnx)")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    p.add_argument("--static", nargs=2, type=int, metavar=("H", "W"), help="static input size (default: dynamic)")
    p.add_argument("--batch", type=int, default=1, help="batch size of a static export (default 1)")
    p.add_argument("--size", type=parse_size, default=(384, 384),
                   help="trace/check size of a dynamic export, N or HxW (default 384)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (17..23, default 18)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the ONNX Runtime validation against PyTorch (on by default)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export.onnx import default_onnx_path, export_onnx, sha256_file
    from ..weights.checkpoint import load_encoder

    weights = resolve_weights(args)
    encoder = load_encoder(weights, backbone=args.backbone)
    static = tuple(args.static) if args.static else None
    ckpt_name = weights if args.weights else None
    output = args.output or default_onnx_path(encoder.config.name, ckpt_name, args.precision, static)
    export_onnx(
        encoder, output, precision=args.precision, opset=args.opset, dynamic=static is None,
        batch=args.batch, size=static or args.size, check=args.check, checkpoint_sha256=sha256_file(weights),
    )
    print(output)
    return 0
