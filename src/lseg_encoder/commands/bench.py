"""`lseg-encoder bench`: latency of each backend at each size, as a table, JSON, markdown and a plot.

Sizes are `--sizes` like every command (`--img_sizes`, the seed's spelling, is kept as an alias); the
work is `suites.bench.run_benchmarks` and `reports.bench.write_report`, so the same report is three
lines of Python away.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_sizes_arg, add_weights_args, backend_list, device_arg, resolve_weights

SEED_SIZES = ("260", "390", "520", "650", "780", "910")


def _int_at_least(minimum: int):
    """argparse type: an integer >= `minimum`, with a message naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def register(sub) -> None:
    p = sub.add_parser("bench", help="latency per backend and size: table, JSON, markdown and PNG plot")
    add_weights_args(p)
    add_sizes_arg(p, list(SEED_SIZES), "--img_sizes", "--img-sizes", help="input sizes (the seed's by default)")
    p.add_argument("--iterations", type=_positive, default=500, help="timed iterations per cell (default 500)")
    p.add_argument("--warmup", type=_non_negative, default=10,
                   help="untimed iterations before timing (default 10); compilation happens before these")
    p.add_argument("--batch", type=_positive, default=1, help="batch size (default 1)")
    p.add_argument("--backends", type=backend_list, default=None,
                   help="comma-separated backends (default: every backend of the table); "
                   "ones that cannot run here are listed as skipped with the reason")
    p.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--mode", choices=("device", "end-to-end", "both"), default="both",
                   help="device-only (input and output on the device), end-to-end (host in, host out) or both")
    p.add_argument("--lanes", type=_positive, default=1,
                   help="also time device-only throughput with N batches in flight on N CUDA streams, beside one "
                   "lane timed alike (compiled backend on CUDA; default 1: not timed)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak fp16 TFLOP/s of the device for the FLOP-floor line and ratios "
                   "(default: known for H100, else no floor)")
    p.add_argument("--out", default="reports/bench", help="output folder (default reports/bench)")
    p.add_argument("--name", default=None,
                   help="file stem of the outputs (default <backbone>_<device type>_b<batch>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..configs import get_config
    from ..errors import LsegError
    from ..reports.bench import format_lanes, format_skipped, format_table, write_report
    from ..sizes import check_size
    from ..store.atomic import ensure_writable_parent
    from ..suites.bench import run_benchmarks
    from ..suites.sweep import default_backends
    from ..weights.checkpoint import load_encoder
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise LsegError(f"--peak-tflops must be > 0, got {args.peak_tflops}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")  # --device is checked by its type
    sizes = list(dict.fromkeys(tuple(s) for s in args.sizes))
    known_backbone = args.backbone or (None if args.weights else "clip_vitl16_384")
    if known_backbone:  # refuse bad sizes before loading (or synthesising) a 1.3 GB checkpoint
        for h, w in sizes:
            check_size(get_config(known_backbone), h, w)
    ensure_writable_parent(f"{args.out}/report.json")

    encoder = load_encoder(resolve_weights(args), backbone=args.backbone)
    for h, w in sizes:
        check_size(encoder.config, h, w)
    modes = ["device", "end-to-end"] if args.mode == "both" else [args.mode]
    backends = args.backends or default_backends(device)
    report = run_benchmarks(encoder, backends, sizes, device=device, batch=args.batch, iterations=args.iterations,
                            warmup=args.warmup, modes=modes, peak_tflops=args.peak_tflops,
                            progress=not args.no_progress, explicit=args.backends or (), lanes=args.lanes)
    if not report.results:
        raise LsegError("no backend could run:\n  " + format_skipped(report).replace("\n", "\n  "))
    for mode in modes:
        print(format_table(report, mode))
        print()
    lanes = format_lanes(report)
    if lanes:
        print(lanes)
        print()
    if report.skipped:
        print("not measured:")
        print("  " + format_skipped(report).replace("\n", "\n  "))
    paths = write_report(report, args.out, args.name)
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    failed = [s for s in report.skipped if s.status == "failed"]
    return 1 if failed else 0
