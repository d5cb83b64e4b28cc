"""Build a TensorRT / TensorRT-RTX engine from an exported encoder ONNX, through the engine cache.

`build_engine(onnx, spec, options)` is the whole pipeline: read the ONNX (sha256, precision,
backbone), resolve the options against the backend (refusing what it lacks), look the engine up
in the cache, otherwise parse, check that the graph is an LSeg encoder, build with progress and
timing, and store engine + sidecar atomically. The CLI (`lseg-encoder build`) is a thin layer
over it.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import BackendUnavailable, EngineError
from ..store.atomic import atomic_path, ensure_writable_parent
from .backend import CapturedLog, TrtBackend, cuda_available, current_compute_capability, dims, load_backend
from .cache import EngineCache, cache_key
from .options import BuildOptions, Profile, ShapeSpec, default_engine_name, parse_shape
from .sidecar import EngineMetadata, sha256_bytes, sha256_file, sidecar_path

if TYPE_CHECKING:  # the TensorRT 10.13 API (tensorrt-stubs), for the objects the builder hands back
    import tensorrt

Report = Callable[[str], None]

# Documented default targets of TensorRT-RTX when no compute capability is set (its CPU-only AOT page).
RTX_DEFAULT_TARGETS_NOTE = ("tensorrt_rtx default: documented as compute capability 8.0, 8.6, 8.9, 12.0 "
                            "and later; Turing (7.5) only when targeted explicitly")
_DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8"}


# ONNX facts ---------------------------------------------------------------------------------------
@dataclass
class OnnxInfo:
    path: Path
    sha256: str
    precision: str | None  # "fp32" / "fp16" / None when it could not be read
    precision_source: str
    backbone: str | None
    metadata: dict = field(default_factory=dict)
    load_error: str | None = None


def read_onnx_info(path: str | Path) -> OnnxInfo:
    """sha256 (graph file and any external-data files), precision and backbone of an ONNX file.

    Precision comes from the exporter's `precision` metadata when present, else from the
    initializers (any float16 weight -> fp16). Memoised per (path, size, mtime): hashing a
    ViT-L/16 graph takes a second or two.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"ONNX file not found: {path}")
    stat = path.stat()
    return _read_onnx_info(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_onnx_info(name: str, size: int, mtime_ns: int) -> OnnxInfo:
    path = Path(name)
    sha = sha256_file(path)
    try:
        import onnx
    except ImportError:
        return OnnxInfo(path, sha, None, "unknown: the onnx package is not installed", None,
                        load_error="the onnx package is not installed (pip install onnx)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        return OnnxInfo(path, sha, None, "unknown", None, load_error=f"{type(exc).__name__}: {exc}")
    metadata = {p.key: p.value for p in model.metadata_props}
    external = sorted({e.value for t in model.graph.initializer for e in t.external_data
                       if e.key == "location"})
    if external:  # the weights determine the engine too
        import hashlib

        h = hashlib.sha256(sha.encode())
        for name in external:
            h.update(sha256_file(path.parent / name).encode())
        sha = h.hexdigest()
    if metadata.get("precision") in ("fp32", "fp16"):
        precision, source = metadata["precision"], "ONNX metadata 'precision'"
    else:
        fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
        precision, source = ("fp16" if fp16 else "fp32"), "ONNX initializer dtypes"
    return OnnxInfo(path, sha, precision, source, metadata.get("backbone"), metadata)


# options -> a concrete plan for one backend ---------------------------------------------------
@dataclass
class BuildPlan:
    precision: str
    typing: str  # "strong" / "weak"
    network_flags: list[str]
    builder_flags: list[str]
    tactic_sources: tuple[str, ...] | None
    optimization_level: int | None
    compute_capabilities: tuple[str, ...] | None
    targets: list[str] | None
    targets_source: str
    notes: list[str]

    def key_targets(self) -> list | str:
        return self.targets if self.targets is not None else self.targets_source


_FLAG_OPTIONS = (("sparse", "SPARSE_WEIGHTS", "--sparse"), ("disable_timing_cache", "DISABLE_TIMING_CACHE",
                 "--disable-timing-cache"), ("gpu_fallback", "GPU_FALLBACK", "--gpu-fallback"),
                 ("debug", "DEBUG", "--debug"))


def resolve_options(options: BuildOptions, backend: TrtBackend, onnx: OnnxInfo) -> BuildPlan:
    """Decide typing, flags and targets for `backend`; raise EngineError for anything it cannot do."""
    notes: list[str] = []
    graph = onnx.precision
    if graph is None:
        raise EngineError(f"cannot tell the precision of {onnx.path}: {onnx.precision_source}")
    strong_flag = ["STRONGLY_TYPED"] if backend.has_strongly_typed_flag else []
    builder_flags: list[str] = []
    if options.fp16 is None or options.fp16 == (graph == "fp16"):
        precision, typing, network_flags = graph, "strong", strong_flag
    elif options.fp16:  # fp32 graph, fp16 requested
        if not backend.has_fp16_flag:
            raise EngineError(
                f"--fp16 with an fp32 ONNX needs TensorRT 10's weakly-typed FP16 builder flag, which "
                f"{backend} does not have (strongly typed: precision comes from the graph). Export the fp16 "
                "ONNX (`lseg-encoder export --precision fp16`) and build from it")
        precision, typing, network_flags = "fp16", "weak", []
        builder_flags.append("FP16")
        notes.append("weakly typed build: BuilderFlag.FP16 lets TensorRT pick fp16 kernels per layer")
    else:
        raise EngineError(
            f"--no-fp16 was given but {onnx.path.name} is an fp16 graph ({onnx.precision_source}); a "
            "strongly typed build keeps the graph's precision. Build from the fp32 ONNX instead")
    if typing == "strong" and not strong_flag and backend.has_fp16_flag:
        raise EngineError(f"{backend} has neither STRONGLY_TYPED networks nor is it strongly typed only")

    for attr, flag, cli in _FLAG_OPTIONS:
        if getattr(options, attr):
            if backend.builder_flag(flag) is None:
                raise EngineError(f"{cli} is not supported by {backend}: it has no BuilderFlag.{flag}")
            builder_flags.append(flag)
    if options.gpu_fallback:
        notes.append("--gpu-fallback only affects layers placed on a DLA; these engines run on the GPU, "
                     "so it changes nothing here (set as asked)")
    if options.disable_timing_cache and backend.flavour == "tensorrt_rtx":
        notes.append("TensorRT-RTX does not use a timing cache for ahead-of-time builds; "
                     "DISABLE_TIMING_CACHE is set as asked and changes nothing")

    if options.tactic_sources is not None:
        known = backend.tactic_sources()
        if not known:
            raise EngineError(f"--tactic-sources is not supported by {backend}: it has no TacticSource")
        unknown = [t[1:] for t in options.tactic_sources if t[1:] not in known]
        if unknown:
            raise EngineError(f"tactic source(s) {', '.join(unknown)} not offered by {backend}; "
                              f"it has {', '.join(known)}")
    if options.optimization_level is not None and not backend.has_optimization_level:
        raise EngineError(f"--opt-level is not supported by {backend}: no builder_optimization_level")

    if options.compute_capabilities is not None:
        if not backend.has_compute_capability_targets:
            raise EngineError(
                f"--compute-capability is not supported by {backend}: TensorRT builds for the GPU it runs "
                "on; ahead-of-time targets are a TensorRT-RTX feature")
        known_cc = backend.known_compute_capabilities()
        bad = [c for c in options.compute_capabilities if c not in known_cc]
        if bad:
            raise EngineError(f"{backend} cannot target compute capability {', '.join(bad)}; "
                              f"it knows {', '.join(known_cc)}")
        targets, source = list(options.compute_capabilities), "explicit --compute-capability"
    elif backend.has_compute_capability_targets:
        targets, source = None, RTX_DEFAULT_TARGETS_NOTE
    else:
        cc = current_compute_capability()
        if cc is not None:
            import torch

            targets, source = [cc], f"the build GPU ({torch.cuda.get_device_name()})"
        else:
            targets, source = None, "the build GPU (unknown: torch sees no CUDA device)"
    return BuildPlan(precision, typing, network_flags, builder_flags, options.tactic_sources,
                     options.optimization_level, options.compute_capabilities, targets, source, notes)


def default_spec(info: OnnxInfo) -> ShapeSpec:
    """One static shape at the ONNX's export size (batch x H x W), else 1x384x384."""
    size = info.metadata.get("export_size", "384x384")
    return coerce_spec(f"{info.metadata.get('export_batch', '1')}x{size}")


def engine_name(onnx_path: str | Path, spec, options: BuildOptions, backend: TrtBackend) -> str:
    """The default engine file name for these inputs (resolving the engine precision)."""
    info = read_onnx_info(onnx_path)
    if info.load_error is not None:
        return Path(onnx_path).stem + ".trt"  # build_engine reports the parser's error
    spec = default_spec(info) if spec is None else coerce_spec(spec)
    return default_engine_name(onnx_path, spec, options, resolve_options(options, backend, info).precision)


def coerce_spec(spec) -> ShapeSpec:
    if isinstance(spec, ShapeSpec):
        return spec
    if isinstance(spec, Profile):
        return ShapeSpec((spec,))
    if isinstance(spec, str):
        return ShapeSpec.dynamic(spec) if "," in spec else ShapeSpec.static(*parse_shape(spec))
    if isinstance(spec, tuple | list) and len(spec) == 3 and all(isinstance(v, int) for v in spec):
        return ShapeSpec.static(*spec)
    raise EngineError(f"bad engine shape spec {spec!r}; use ShapeSpec, 'BxHxW' or 'MIN,OPT,MAX'")


def rebuild_command(onnx_path: Path, spec: ShapeSpec, options: BuildOptions, flavour: str) -> str:
    args = ["lseg-encoder", "build", "--onnx", str(onnx_path), "--trt-backend", flavour]
    if spec.is_static:
        args += ["--static", "x".join(map(str, spec.profiles[0].min))]
    else:
        for p in spec.profiles:
            args += ["--profile", str(p)]
    args += ["--workspace", f"{options.workspace_mib}MiB"]
    if options.fp16 is not None:
        args.append("--fp16" if options.fp16 else "--no-fp16")
    for attr, _, cli in _FLAG_OPTIONS:
        if getattr(options, attr):
            args.append(cli)
    if options.tactic_sources is not None:
        args.append("--tactic-sources=" + ",".join(options.tactic_sources))
    if options.optimization_level is not None:
        args += ["--opt-level", str(options.optimization_level)]
    for cc in options.compute_capabilities or ():
        args += ["--compute-capability", cc]
    return " ".join(args)


# the build itself ---------------------------------------------------------------------------------
@dataclass
class EngineArtifact:
    path: Path
    sidecar_path: Path
    metadata: EngineMetadata
    cache_hit: bool
    key: str
    seconds: float  # wall time of this call (build, or lookup on a hit)
    notes: list[str] = field(default_factory=list)


def build_engine(onnx_path: str | Path, spec=None, options: BuildOptions | None = None, *,
                 backend: str | TrtBackend | None = None, output: str | Path | None = None,
                 cache: bool = True, cache_dir: str | Path | None = None,
                 report: Report | None = None) -> EngineArtifact:
    """Build (or fetch from the cache) the engine for `onnx_path` at `spec` with `options`.

    spec: a ShapeSpec, 'HxW' / 'BxHxW' (static) or 'MIN,OPT,MAX' (one profile); default: the ONNX's
    export size when it records one, else 1x384x384. `output` also places a copy (engine + sidecar)
    there; with `cache=False` the engine is built straight to `output`. `report` receives progress
    lines (the CLI prints them); timings are returned either way.
    """
    start = time.perf_counter()
    say: Report = report or (lambda msg: None)
    onnx_path = Path(onnx_path)
    options = options or BuildOptions()
    trt = backend if isinstance(backend, TrtBackend) else load_backend(backend)
    info = read_onnx_info(onnx_path)
    spec = default_spec(info) if spec is None else coerce_spec(spec)
    if info.load_error is not None:
        _parse_only(trt, onnx_path)  # raises with TensorRT's parser message if it fails too
        raise EngineError(f"{onnx_path}: not a readable ONNX model ({info.load_error})")
    plan = resolve_options(options, trt, info)
    _check_sizes(info, spec)
    if output is not None:
        ensure_writable_parent(output)  # before a build of minutes
    name = default_engine_name(onnx_path, spec, options, plan.precision)
    key = cache_key(onnx_sha256=info.sha256, shapes=spec.to_json(), options=options.to_json(),
                    flavour=trt.flavour, version=trt.version, targets=plan.key_targets(), typing=plan.typing)
    for note in plan.notes:
        say(f"note: {note}")

    if not cache:
        target = Path(output) if output else onnx_path.parent / name
        meta = _build(trt, info, spec, options, plan, key, target, say)
        return EngineArtifact(target, sidecar_path(target), meta, False, key, time.perf_counter() - start,
                              plan.notes)

    store = EngineCache(cache_dir)
    engine_file, _ = store.files(key, name)
    with store.locked(key, say):
        cached = store.lookup(key, name, trt, say)
        hit = cached is not None
        if cached is not None:
            meta = cached
            say(f"cache hit: {engine_file} (key {key[:16]}, built {meta.build['time_utc']} in "
                f"{meta.build['seconds']:.1f} s)")
        else:
            say(f"cache miss (key {key[:16]}): building {name} with {trt}")
            meta = _build(trt, info, spec, options, plan, key, engine_file, say)
    path = engine_file
    if output is not None:
        path = _place_copy(engine_file, meta, Path(output), say)
    return EngineArtifact(path, sidecar_path(path), meta, hit, key, time.perf_counter() - start, plan.notes)


def _place_copy(src: Path, meta: EngineMetadata, dst: Path, say: Report) -> Path:
    if dst.suffix == ".json":
        raise EngineError(f"{dst}: give the engine path (.trt); its sidecar is written beside it")
    dst_meta = sidecar_path(dst)
    if dst.is_file() and dst_meta.is_file():
        try:
            existing = EngineMetadata.read(dst_meta)
        except EngineError:
            existing = None
        want = meta.engine["sha256"]
        if existing and existing.engine["sha256"] == want and sha256_file(dst) == want:
            say(f"{dst} is already this engine")
            return dst
    with atomic_path(dst, expected_bytes=src.stat().st_size) as tmp:
        shutil.copyfile(src, tmp)
    copy = EngineMetadata(**{**meta.to_json(), "engine": {**meta.engine, "file": dst.name}})
    _write_sidecar_or_drop(copy, dst)
    say(f"wrote {dst} and {dst_meta.name}")
    return dst


def _write_sidecar_or_drop(meta: EngineMetadata, engine: Path) -> None:
    """An engine without its sidecar cannot be loaded: if the sidecar fails, the engine goes too."""
    try:
        meta.write(sidecar_path(engine))
    except BaseException:
        engine.unlink(missing_ok=True)
        raise


def _check_sizes(info: OnnxInfo, spec: ShapeSpec) -> None:
    """Static shapes and profile opt shapes must satisfy the backbone's size rule (when it is known)."""
    if not info.backbone:
        return
    from ..configs import CONFIGS
    from ..sizes import check_size

    config = CONFIGS.get(info.backbone)
    if config is None:
        return
    for profile in spec.profiles:
        _, h, w = profile.opt
        check_size(config, h, w)


def _parse_only(trt: TrtBackend, onnx_path: Path) -> None:
    """Parse with TensorRT's ONNX parser alone, raising EngineError with its message on failure."""
    log = CapturedLog()
    logger = trt.make_logger(log)
    builder = trt.module.Builder(logger)
    if builder is None:
        raise BackendUnavailable(f"{trt}: could not create a Builder: "
                                 f"{'; '.join(log.errors()) or 'no reason logged'}")
    _parse_into(trt, builder, logger, onnx_path, log, 0)


def _parse_into(trt: TrtBackend, builder: tensorrt.Builder, logger: tensorrt.ILogger, onnx_path: Path,
                log: CapturedLog, net_flags: int) -> tuple[tensorrt.INetworkDefinition, tensorrt.OnnxParser]:
    network = builder.create_network(net_flags)
    parser = trt.module.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        problems = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            where = ""
            if err.node() >= 0:
                where = f"node {err.node()} ({err.node_name() or '?'}, op {err.node_operator() or '?'}): "
            problems.append(f"{where}{err.code().name}: {err.desc()}")
        if not problems:
            problems = log.errors() or ["no reason given"]
        raise EngineError(f"{onnx_path}: {trt}'s ONNX parser failed: " + "; ".join(problems))
    return network, parser


def _io(network: tensorrt.INetworkDefinition) -> list[dict]:
    rows = []
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            t = get(i)
            rows.append({"name": t.name, "mode": mode, "dtype": _DTYPE_NAMES.get(t.dtype.name, t.dtype.name),
                         "shape": dims(t.shape)})
    return rows


def check_encoder_io(io: list[dict], onnx_path: Path, out_dim: int | None = None) -> None:
    """Refuse a graph that is not an image encoder: one float (B,3,H,W) input, one (B,C,h,w) output."""
    inputs = [r for r in io if r["mode"] == "input"]
    outputs = [r for r in io if r["mode"] == "output"]
    expect = ("one float32 input (B,3,H,W) and one float output (B,512,h,w) "
              "(as written by `lseg-encoder export`)")
    problem = None
    if len(inputs) != 1 or len(outputs) != 1:
        problem = f"{len(inputs)} input(s) and {len(outputs)} output(s)"
    else:
        i, o = inputs[0], outputs[0]
        if len(i["shape"]) != 4 or i["shape"][1] != 3 or i["dtype"] != "float32":
            problem = f"input {i['name']!r} is {i['dtype']} {tuple(i['shape'])}"
        elif len(o["shape"]) != 4 or o["dtype"] not in ("float32", "float16") or (
                out_dim is not None and o["shape"][1] not in (out_dim, -1)):
            problem = f"output {o['name']!r} is {o['dtype']} {tuple(o['shape'])}"
    if problem:
        got = ", ".join(f"{r['mode']} {r['name']!r} {r['dtype']} {tuple(r['shape'])}" for r in io)
        raise EngineError(f"{onnx_path} is not an LSeg encoder graph: {problem}; expected {expect}; "
                          f"got {got}")


class _Progress:
    """Top-level build phases with elapsed times, from TensorRT's IProgressMonitor callbacks."""

    def __init__(self, say: Report):
        self.say, self.t0 = say, time.perf_counter()
        self.started: dict[str, float] = {}
        self.depth: dict[str, int] = {}
        self.phases: dict[str, float] = {}

    def start(self, name: str, parent: str | None, steps: int) -> None:
        self.depth[name] = 0 if parent is None else self.depth.get(parent, 0) + 1
        self.started[name] = time.perf_counter()
        if self.depth[name] <= 1:
            indent = "  " * self.depth[name]
            self.say(f"  [{time.perf_counter() - self.t0:6.1f} s] {indent}{name} ({steps} steps)")

    def finish(self, name: str) -> None:
        if name in self.started and self.depth.get(name, 9) <= 1:
            self.phases[name] = round(time.perf_counter() - self.started[name], 3)


def _monitor(trt: TrtBackend, progress: _Progress) -> tensorrt.IProgressMonitor:
    if TYPE_CHECKING:
        from tensorrt import IProgressMonitor
    else:
        IProgressMonitor = trt.module.IProgressMonitor  # this flavour's class: the base must be the runtime's

    class _Monitor(IProgressMonitor):
        def __init__(self) -> None:
            IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            progress.start(phase_name, parent_phase, num_steps)  # parent_phase is None for top-level phases

        def phase_finish(self, phase_name: str) -> None:
            progress.finish(phase_name)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

    return _Monitor()


def _build(trt: TrtBackend, info: OnnxInfo, spec: ShapeSpec, options: BuildOptions, plan: BuildPlan,
           key: str, target: Path, say: Report) -> EngineMetadata:
    m = trt.module
    log = CapturedLog()
    logger = trt.make_logger(log)
    t0 = time.perf_counter()
    builder = m.Builder(logger)
    if builder is None:
        raise BackendUnavailable(f"{trt}: could not create a Builder: "
                                 f"{'; '.join(log.errors()) or 'no reason logged'}")
    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(getattr(m.NetworkDefinitionCreationFlag, name))
    network, _parser = _parse_into(trt, builder, logger, info.path, log, net_flags)
    io = _io(network)
    out_dim = None
    if info.backbone:
        from ..configs import CONFIGS

        out_dim = CONFIGS[info.backbone].out_dim if info.backbone in CONFIGS else None
    check_encoder_io(io, info.path, out_dim)
    t_parse = time.perf_counter() - t0
    say(f"  parsed {info.path.name} ({network.num_layers} layers, {plan.precision}, {plan.typing}ly typed) "
        f"in {t_parse:.1f} s")

    input_name, declared = io[0]["name"], io[0]["shape"]
    config = builder.create_builder_config()
    if not hasattr(config, "set_memory_pool_limit"):
        raise EngineError(f"--workspace is not supported by {trt}: no IBuilderConfig.set_memory_pool_limit")
    config.set_memory_pool_limit(m.MemoryPoolType.WORKSPACE, options.workspace)
    for flag in plan.builder_flags:
        config.set_flag(getattr(m.BuilderFlag, flag))
    if plan.tactic_sources is not None:
        known = trt.tactic_sources()
        mask = config.get_tactic_sources()
        for entry in plan.tactic_sources:
            bit = 1 << int(known[entry[1:]])
            mask = (mask | bit) if entry[0] == "+" else (mask & ~bit)
        if not config.set_tactic_sources(mask) and config.get_tactic_sources() != mask:
            raise EngineError(f"{trt} rejected tactic sources {','.join(plan.tactic_sources)}")
    if plan.optimization_level is not None:
        config.builder_optimization_level = int(plan.optimization_level)
    if plan.compute_capabilities is not None:  # TensorRT-RTX only (resolve_options refuses it elsewhere)
        config.num_compute_capabilities = len(  # type: ignore[attr-defined]  # RTX API, not in the stubs
            plan.compute_capabilities)
        for i, cc in enumerate(plan.compute_capabilities):
            config.set_compute_capability(  # type: ignore[attr-defined]  # RTX API, not in the stubs
                trt.compute_capability_member(cc), i)
    if hasattr(config, "profiling_verbosity"):
        config.profiling_verbosity = m.ProfilingVerbosity.DETAILED  # layer info for IEngineInspector
    readback = []
    for profile in spec.profiles:
        for label, shape in zip(("min", "opt", "max"), profile.input_shapes(), strict=True):
            bad = [f"axis {a}: {s} vs {d}" for a, (s, d) in enumerate(zip(shape, declared, strict=True))
                   if d != -1 and d != s]
            if bad:
                raise EngineError(
                    f"profile {profile} ({label} {shape}) does not fit {info.path.name}, whose input "
                    f"{input_name!r} is {tuple(declared)} ({'; '.join(bad)}); export a dynamic ONNX or build "
                    "at the ONNX's own shape")
        prof = builder.create_optimization_profile()
        prof.set_shape(input_name, *(m.Dims(list(shape)) for shape in profile.input_shapes()))
        if config.add_optimization_profile(prof) < 0:
            raise EngineError(f"{trt} rejected profile {profile}: {'; '.join(log.errors()) or 'invalid'}")
        got = [dims(shape) for shape in prof.get_shape(input_name)]
        want = [list(s) for s in profile.input_shapes()]
        if got != want:
            raise EngineError(f"{trt} read profile {profile} back as {got}, set as {want}")
        readback.append(got)
    applied = _config_read_back(trt, config, plan, options)
    progress = _Progress(say)
    if trt.has_progress_monitor:
        config.progress_monitor = _monitor(trt, progress)
    else:
        say(f"  ({trt} has no IProgressMonitor; no per-phase progress)")

    say(f"  building {spec.token()} {plan.precision} engine (workspace {options.workspace_mib} MiB) ...")
    t1 = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    except Exception as exc:  # the bindings raise on some invalid configs instead of returning None
        raise EngineError(f"{trt} failed to build {info.path.name}: {exc}; "
                          f"{'; '.join(log.errors())}") from None
    build_seconds = time.perf_counter() - t1
    if serialized is None:
        raise EngineError(f"{trt} failed to build {info.path.name}: "
                          + ("; ".join(log.errors()) or "no reason logged"))
    data = bytes(serialized)
    del serialized
    say(f"  built in {build_seconds:.1f} s ({len(data) / 2**20:.1f} MiB)")

    sparsity = _sparsity_report(trt, data, options, log)
    if options.sparse:
        say(f"  sparsity: {sparsity['report']}")
    meta = EngineMetadata(
        engine={"file": target.name, "sha256": sha256_bytes(data), "bytes": len(data)},
        backend={"flavour": trt.flavour, "version": trt.version, "typing": plan.typing,
                 "network_flags": plan.network_flags, "builder_flags": plan.builder_flags},
        onnx={"path": str(info.path.resolve()), "sha256": info.sha256, "precision": info.precision,
              "precision_source": info.precision_source, "backbone": info.backbone,
              "metadata": info.metadata},
        precision=plan.precision,
        options=options.to_json(),
        profiles=[p.to_json() for p in spec.profiles],
        io=io,
        targets={"compute_capabilities": plan.targets, "source": plan.targets_source},
        build={"host": socket.gethostname(), "platform": platform.platform(),
               "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
               "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "seconds": round(build_seconds, 3), "parse_seconds": round(t_parse, 3),
               "phases": progress.phases, "profiles_read_back": readback, "config_read_back": applied},
        sparsity=sparsity,
        cache_key=key,
        rebuild_command=rebuild_command(info.path, spec, options, trt.flavour),
        lseg_encoder_version=__version__,
        build_log=[msg for msg in log.at_least("INFO") if not msg.startswith("-" * 10)][:80],
    )
    with atomic_path(target, expected_bytes=len(data)) as tmp:
        tmp.write_bytes(data)
    _write_sidecar_or_drop(meta, target)
    say(f"  wrote {target} (+ {sidecar_path(target).name}) in {time.perf_counter() - t0:.1f} s total")
    return meta


def _config_read_back(trt: TrtBackend, config: tensorrt.IBuilderConfig, plan: BuildPlan,
                      options: BuildOptions) -> dict:
    """Read every option back from the builder config; an option that did not stick is an error."""
    m = trt.module
    flags = [f for f in plan.builder_flags if config.get_flag(getattr(m.BuilderFlag, f))]
    tactics = int(config.get_tactic_sources()) if hasattr(config, "get_tactic_sources") else None
    out: dict[str, Any] = {"builder_flags": flags,
           "workspace": int(config.get_memory_pool_limit(m.MemoryPoolType.WORKSPACE)),
           "tactic_sources_mask": tactics,
           "optimization_level": getattr(config, "builder_optimization_level", None)}
    if trt.has_compute_capability_targets:
        count = config.num_compute_capabilities  # type: ignore[attr-defined]  # RTX API, not in the stubs
        out["compute_capabilities"] = [
            str(config.get_compute_capability(i).name)  # type: ignore[attr-defined]  # RTX API, not in the stubs
            for i in range(count)]
    problems = []
    if flags != plan.builder_flags:
        problems.append(f"flags {sorted(set(plan.builder_flags) - set(flags))} did not stick")
    if out["workspace"] != options.workspace:
        problems.append(f"workspace reads back as {out['workspace']} bytes, not {options.workspace}")
    if plan.optimization_level is not None and out["optimization_level"] != plan.optimization_level:
        problems.append(f"optimization level reads back as {out['optimization_level']}")
    if plan.compute_capabilities is not None and out["compute_capabilities"] != [
            "SM" + cc.replace(".", "") for cc in plan.compute_capabilities]:
        problems.append(f"compute capabilities read back as {out['compute_capabilities']}")
    if problems:
        raise EngineError(f"{trt} did not apply the requested options: {'; '.join(problems)}")
    return out


def _sparsity_report(trt: TrtBackend, data: bytes, options: BuildOptions, log: CapturedLog) -> dict:
    """How many layers chose sparse tactics, when the backend says; otherwise say why it is unknown.

    LSeg weights are dense, so SPARSE_WEIGHTS is expected to change nothing; this reports what
    TensorRT did rather than implying a speed-up.
    """
    out: dict[str, Any] = {"requested": options.sparse, "layers_total": None, "layers_sparse": None, "log": []}
    out["log"] = [msg for msg in log.at_least("INFO")
                  if "(Sparsity)" in msg or "sparse implementation" in msg]
    counts, why_not = inspect_layers(trt, data)
    if counts is not None:
        out["layers_total"], out["layers_sparse"] = counts
        out["report"] = f"{counts[1]} of {counts[0]} layers chose sparse tactics (IEngineInspector)"
    elif out["log"]:
        out["report"] = "builder log: " + " | ".join(out["log"])
    else:
        out["report"] = f"not available: the builder logged no sparsity summary and {why_not}"
    return out


def inspect_layers(trt: TrtBackend, data: bytes) -> tuple[tuple[int, int] | None, str]:
    """((total layers, layers whose tactic name says sparse), '') via IEngineInspector, or (None, why)."""
    if not trt.has_engine_inspector:
        return None, f"{trt} has no IEngineInspector"
    ok, reason = cuda_available()
    if not ok:
        return None, f"the engine cannot be deserialised for IEngineInspector here ({reason})"
    cc = current_compute_capability()
    if trt.has_compute_capability_targets and cc not in trt.known_compute_capabilities():
        return None, f"{trt} cannot load engines on this GPU (compute capability {cc})"
    import json

    log = CapturedLog()
    runtime = trt.module.Runtime(trt.make_logger(log))
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        return None, "deserialize_cuda_engine failed: " + ("; ".join(log.errors()) or "no reason logged")
    inspector = engine.create_engine_inspector()
    try:
        info = json.loads(inspector.get_engine_information(trt.module.LayerInformationFormat.JSON))
    except ValueError:
        return None, "IEngineInspector returned no JSON layer information"
    layers = info.get("Layers", [])
    sparse = sum(1 for layer in layers
                 if isinstance(layer, dict) and "sparse" in str(layer.get("TacticName", "")).lower())
    return (len(layers), sparse), ""
