"""`lseg-encoder build`: exported ONNX -> TensorRT / TensorRT-RTX engine + JSON sidecar, cached.

Shapes are batch x height x width, written BxHxW. `--static BxHxW` (repeatable) builds one static engine
per shape; `--profile MIN,OPT,MAX` (each BxHxW, repeatable) builds one dynamic engine with those
optimisation profiles, e.g. `--profile 1x256x256,1x384x384,4x640x640`. With neither, one static
engine at the ONNX's export size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("build", help="build a TensorRT / TensorRT-RTX engine (+ sidecar) from an ONNX",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="encoder ONNX written by `lseg-encoder export`")
    p.add_argument("--output", help="also place a copy of the engine (+ sidecar) here: a .trt path, or a folder "
                   "(one file per shape, named <onnx-stem>__<options>_ws<N>MiB.trt). Default: no copy; the "
                   "engine stays in the engine cache and its path is printed")
    p.add_argument("--trt-backend", choices=["tensorrt", "tensorrt_rtx"],
                   help="TensorRT flavour (default: tensorrt if importable, else tensorrt_rtx)")
    p.add_argument("--workspace", default="4GiB",
                   help="workspace pool limit: bytes or KiB/MiB/GiB (default 4GiB)")
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="fp16 engine. Default: follow the ONNX. TensorRT 10 + fp32 ONNX: the FP16 builder "
                   "flag; strongly typed backends (TensorRT 11, RTX) need the fp16 ONNX")
    p.add_argument("--sparse", action=argparse.BooleanOptionalAction, default=False,
                   help="allow 2:4 sparse tactics (LSeg weights are dense: expect no change; the "
                   "sparse-layer count is reported where the backend exposes it)")
    p.add_argument("--disable-timing-cache", action="store_true", help="BuilderFlag.DISABLE_TIMING_CACHE")
    p.add_argument("--gpu-fallback", action="store_true", help="BuilderFlag.GPU_FALLBACK (DLA only)")
    p.add_argument("--debug", action="store_true", help="BuilderFlag.DEBUG (sync after every layer)")
    p.add_argument("--tactic-sources", help="comma list of the backend's TacticSource names, each +NAME or "
                   "-NAME relative to its default; write it with '=' when it starts with '-', e.g. "
                   "--tactic-sources=-JIT_CONVOLUTIONS")
    p.add_argument("--opt-level", type=int, help="builder optimisation level 0..5 (default: the backend's)")
    p.add_argument("--compute-capability", action="append", metavar="CC",
                   help="TensorRT-RTX target, e.g. 8.9 (repeatable; default: its documented default set)")
    p.add_argument("--profile", action="append", metavar="MIN,OPT,MAX",
                   help="optimisation profile, each BxHxW (repeatable: one engine, several profiles)")
    p.add_argument("--static", action="append", metavar="BxHxW",
                   help="static shape (repeatable: one engine each)")
    p.add_argument("--engine-cache",
                   help="engine cache folder (default: $LSEG_CACHE_DIR/engines, else the user cache)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine import BuildOptions, ShapeSpec, build_engine, load_backend, parse_shape
    from ..engine.plan import engine_name
    from ..errors import EngineError

    if args.profile and args.static:
        raise EngineError("give --profile (one dynamic engine) or --static (one engine per shape), not both")
    tactics = None
    if args.tactic_sources is not None:
        tactics = tuple(t for t in args.tactic_sources.split(",") if t.strip())
    options = BuildOptions(
        workspace=args.workspace, fp16=args.fp16, sparse=args.sparse,
        disable_timing_cache=args.disable_timing_cache, gpu_fallback=args.gpu_fallback, debug=args.debug,
        tactic_sources=tactics,
        optimization_level=args.opt_level,
        compute_capabilities=tuple(args.compute_capability) if args.compute_capability else None,
    )
    if args.profile:
        specs = [ShapeSpec.dynamic(*args.profile)]
    elif args.static:
        specs = [ShapeSpec.static(*parse_shape(s)) for s in args.static]
    else:
        specs = [None]  # the ONNX's export size
    backend = load_backend(args.trt_backend)
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    typing = "strongly typed only" if backend.strongly_typed_only else "FP16 builder flag available"
    aot = ", CPU-only ahead-of-time build" if backend.builds_without_gpu else ""
    say(f"backend: {backend} ({typing}{aot})")
    onnx = Path(args.onnx)
    for spec in specs:
        output = None  # one copy only: the cached engine, unless a copy is asked for
        if args.output:
            output = Path(args.output)
            if len(specs) > 1 or output.is_dir():
                output = output / engine_name(onnx, spec, options, backend)
        artifact = build_engine(onnx, spec, options, backend=backend, output=output,
                                cache_dir=args.engine_cache, progress=say)
        meta = artifact.metadata
        state = "cache hit" if artifact.cache_hit else f"built in {meta.build['seconds']:.1f} s"
        where = "" if output else " (in the engine cache; --output places a copy elsewhere)"
        say(f"{artifact.path}: {meta.precision} {meta.backend['flavour']} {meta.backend['version']} engine, "
            f"{state}{where}")
        print(artifact.path)
    return 0

