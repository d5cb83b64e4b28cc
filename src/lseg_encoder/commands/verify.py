"""`lseg-encoder verify`: export, build, run every available backend, and write report.md/json + PNGs.

Exits 1 when a fidelity verdict fails, 2 on bad input; see `lseg_encoder.verify` for the steps.
"""

from __future__ import annotations

import sys

from .common import add_weights_args, parse_size


def register(sub) -> None:
    from ..runners import BACKENDS

    p = sub.add_parser("verify", help="prove every backend faithful to PyTorch fp32: report.md/json + PNGs")
    add_weights_args(p)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None, metavar="N|HxW",
                   help="input sizes (default 384)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--backends", default=None,
                   help="comma-separated, torch (the reference) always runs; default on CPU: torch,onnxruntime,"
                        f"onnxruntime-fp16,tensorrt; on CUDA also torch-fp16,compiled. Known: {', '.join(BACKENDS)}")
    p.add_argument("--iterations", type=int, default=None, help="timed iterations per mode (default 3 CPU, 50 CUDA)")
    p.add_argument("--out", default="reports/verify", help="output folder (default reports/verify)")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args) -> int:
    from ..verify import DEFAULT_SIZES, run_verify
    from .common import resolve_weights

    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    weights = resolve_weights(args)
    result = run_verify(weights, backbone=args.backbone, sizes=args.sizes or DEFAULT_SIZES, device=args.device,
                        backends=backends, out=args.out, iterations=args.iterations, say=_say)
    for row in result.rows:
        print(f"{row.size} {row.candidate:<18} {'PASS' if row.passed else 'FAIL'}  {row.metrics}")
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"{'PASS' if result.passed else 'FAIL'}: wrote {args.out}/report.md, report.json"
          + (f", {result.segmentation_png}" if result.segmentation_png else "") + f" in {result.seconds:.0f} s")
    return 0 if result.passed else 1
