"""`lseg-encoder verify`: export, build, run every backend of the table, and write report.md/json + PNG.

Exits 1 when a fidelity verdict fails, 2 on bad input; see `lseg_encoder.suites.verify` for the steps.
"""

from __future__ import annotations

from .common import add_sizes_arg, add_weights_args, backend_list, device_arg, say


def register(sub) -> None:
    from ..backends import BACKENDS

    p = sub.add_parser("verify", help="prove every backend faithful to PyTorch fp32: report.md/json + PNGs")
    add_weights_args(p)
    add_sizes_arg(p, ["384"])
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--backends", type=backend_list, default=None,
                   help="comma-separated; torch (the reference) always runs. Default: every backend, each run or "
                        f"skipped with its reason. Known: {', '.join(BACKENDS)}")
    p.add_argument("--iterations", type=int, default=None,
                   help="timed iterations per mode, each cell also bounded to 5 s (default 3 CPU, 50 CUDA)")
    p.add_argument("--out", default="reports/verify", help="output folder (default reports/verify)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..reports.verify import write_verify_report
    from ..store.atomic import ensure_writable_parent
    from ..suites.verify import run_verify
    from ..weights.checkpoint import load_encoder
    from .common import resolve_weights

    ensure_writable_parent(f"{args.out}/report.json")
    weights = resolve_weights(args)
    say(f"loading {weights}")
    encoder = load_encoder(weights, backbone=args.backbone)
    result = run_verify(encoder, weights=weights, sizes=args.sizes, device=args.device, backends=args.backends,
                        iterations=args.iterations, progress=say)
    paths = write_verify_report(result, args.out)
    for row in result.rows:
        print(f"{row.size} {row.candidate:<18} {'PASS' if row.passed else 'FAIL'}  {row.metrics}")
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"{'PASS' if result.passed else 'FAIL'}: wrote " + ", ".join(str(p) for p in paths.values())
          + f" in {result.seconds:.0f} s")
    return 0 if result.passed else 1
