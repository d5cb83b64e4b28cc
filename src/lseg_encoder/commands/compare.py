"""`lseg-encoder compare`: fidelity of two feature files, of backends against the first, or of two
checkpoints on one backend; writes compare.json, compare.md and a per-pixel cosine heat-map.

    lseg-encoder compare cand.npy ref.npy [--precision fp16]
    lseg-encoder compare --weights W.ckpt --backends torch,onnxruntime-fp16 --sizes 260 390
    lseg-encoder compare --weights A.ckpt --weights-b B.ckpt --backend torch --sizes 390
"""

from __future__ import annotations

import sys

from .common import add_sizes_arg, add_weights_args, backend_list, device_arg, say


def register(sub) -> None:
    from ..backends import BACKENDS
    from ..fidelity.tolerances import TOLERANCES

    p = sub.add_parser("compare", help="compare feature files, backends, or two checkpoints (JSON + markdown + PNG)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", metavar="NPY", help="candidate.npy reference.npy: (C,h,w) or (B,C,h,w)")
    p.add_argument("--precision", default="fp32", choices=list(TOLERANCES),
                   help="tolerance row for two feature files (default fp32)")
    add_weights_args(p)
    p.add_argument("--weights-b", help="second checkpoint (the reference): cross-checkpoint mode, metrics only")
    p.add_argument("--backends", type=backend_list, default=["torch", "onnxruntime"],
                   help="comma-separated backends; the first is the reference (default torch,onnxruntime)")
    p.add_argument("--backend", default="torch", choices=list(BACKENDS),
                   help="backend of cross-checkpoint mode (default torch)")
    add_sizes_arg(p, ["384"])
    p.add_argument("--device", type=device_arg, default="cpu")
    p.add_argument("--out", default="reports/compare", help="output folder (default reports/compare)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import LsegError
    from ..reports.compare import failure_lines, markdown_table, write_compare_report

    if args.files:
        if len(args.files) != 2:
            raise LsegError(f"give two feature files (candidate, reference), got {len(args.files)}")
        rows, skipped, meta = _files_mode(args)
    elif args.weights_b:
        rows, skipped, meta = _checkpoints_mode(args)
    else:
        rows, skipped, meta = _backends_mode(args)
    paths = write_compare_report(rows, args.out, meta=meta, skipped=skipped)
    print(markdown_table(rows), end="")
    for skip in skipped:
        print(f"skipped {skip.line()}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    failures = failure_lines(rows)
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    return 1 if failures else 0


def _files_mode(args):
    from ..suites.compare import compare_files, prompt_features

    text = prompt_features(args.weights) if args.weights else None
    row = compare_files(args.files[0], args.files[1], args.precision, text)
    meta = {"mode": "files", "candidate": args.files[0], "reference": args.files[1], "precision": args.precision}
    return [row], [], meta


def _checkpoints_mode(args):
    from pathlib import Path

    from ..errors import LsegError
    from ..suites.compare import compare_checkpoints, prompt_features
    from ..weights.checkpoint import load_encoder

    if not args.weights:
        raise LsegError("--weights-b needs --weights (the candidate checkpoint)")
    enc_a = load_encoder(args.weights, backbone=args.backbone)
    enc_b = load_encoder(args.weights_b, backbone=args.backbone)
    names = (Path(args.weights).name, Path(args.weights_b).name)
    rows = compare_checkpoints(enc_a, enc_b, args.backend, args.sizes, device=args.device,
                               text_features=prompt_features(args.weights_b), names=names, progress=say)
    meta = {"mode": "checkpoints", "backend": args.backend, "weights": args.weights, "weights_b": args.weights_b,
            "device": args.device}
    return rows, [], meta


def _backends_mode(args):
    from ..errors import LsegError
    from ..suites.compare import compare_backends, prompt_features
    from ..weights.checkpoint import load_encoder
    from .common import resolve_weights

    if len(args.backends) < 2:
        raise LsegError("--backends needs at least two backends (the first is the reference)")
    weights = resolve_weights(args)
    encoder = load_encoder(weights, backbone=args.backbone)
    rows, skipped = compare_backends(encoder, args.backends, args.sizes, device=args.device,
                                     text_features=prompt_features(weights), progress=say)
    meta = {"mode": "backends", "reference": args.backends[0], "weights": weights, "backbone": encoder.config.name,
            "synthetic_weights": bool(getattr(encoder, "synthetic", False)), "device": args.device}
    return rows, skipped, meta
