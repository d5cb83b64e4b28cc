"""`lseg-encoder package-aoti`: an AOTInductor `.pt2` package of the encoder at one static size.

The package runs from Python (`AOTIRunner`) and from C++ (`cpp/`, `lseg_cpp --aoti X.pt2`).
"""

from __future__ import annotations

from .common import add_shape_arg, add_weights_args, resolve_weights


def register(sub) -> None:
    p = sub.add_parser("package-aoti", help="compile the encoder into an AOTInductor .pt2 package "
                       "(static size; for lseg_cpp and AOTIRunner)")
    add_weights_args(p)
    add_shape_arg(p, "--static", required=True, help="static input shape of the package, BxHxW (e.g. 1x480x480)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="fp16: fp16 weights and compute, fp32 final normalisation; input stays float32")
    p.add_argument("--output-dtype", choices=("fp32", "fp16"), default="fp32",
                   help="dtype of the features the package writes (fp16: half the bytes, written by the "
                        "normalisation kernel; lseg_cpp --output-dtype fp16 then copies them without a cast)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="device the package is compiled for (it runs only there)")
    p.add_argument("--output", required=True, help="output package, must end in .pt2")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..export.aoti import package_aoti
    from ..precisions import dtype_name
    from ..weights.checkpoint import load_encoder

    weights = resolve_weights(args)
    encoder = load_encoder(weights, backbone=args.backbone)
    batch, height, width = args.static
    result = package_aoti(encoder, args.output, (height, width), batch=batch, precision=args.precision,
                          device=args.device, output_dtype=dtype_name(args.output_dtype))
    label = " (SYNTHETIC weights)" if encoder.synthetic else ""
    spec = result.spec
    print(f"wrote {result.path}: {spec.backbone}{label} {spec.precision} {spec.device}, input "
          f"{spec.input_shape} -> output {spec.output_shape} {spec.output_dtype}; export {result.export_s:.1f} s, "
          f"compile {result.compile_s:.1f} s", file=sys.stderr)
    return 0
