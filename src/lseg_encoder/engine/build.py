"""Build a TensorRT / TensorRT-RTX engine from an exported encoder ONNX, through the engine cache.

`build_engine(onnx, spec, options)` is the whole pipeline: read the ONNX (sha256, precision,
backbone), resolve the options against the backend (refusing what it lacks), look the engine up
in the cache, otherwise parse, check that the graph is an LSeg encoder, build with progress and
timing, and store engine + sidecar atomically. The CLI (`lseg-encoder build`) is a thin layer
over it.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import BackendUnavailable, EngineError
from ..store.atomic import atomic_path, ensure_writable_parent
from ..store.cache import cached_artifact
from .backend import CapturedLog, TrtBackend, dims, load_backend
from .inspect import config_read_back, sparsity_report
from .options import BuildOptions, ShapeSpec, default_engine_name
from .plan import (
    BuildPlan,
    OnnxInfo,
    cache_key,
    check_sizes,
    coerce_spec,
    default_spec,
    read_onnx_info,
    rebuild_command,
    resolve_options,
)
from .sidecar import EngineMetadata, sha256_bytes, sha256_file, sidecar_path, verify_engine

if TYPE_CHECKING:  # the TensorRT 10.13 API (tensorrt-stubs), for the objects the builder hands back
    import tensorrt

Report = Callable[[str], None]
_DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8"}


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
                 progress: Report | None = None) -> EngineArtifact:
    """Build (or fetch from the cache) the engine for `onnx_path` at `spec` with `options`.

    spec: a ShapeSpec, 'HxW' / 'BxHxW' (static) or 'MIN,OPT,MAX' (one profile); default: the ONNX's
    export size when it records one, else 1x384x384. `output` also places a copy (engine + sidecar)
    there; with `cache=False` the engine is built straight to `output`. `progress` receives progress
    lines (the CLI prints them); timings are returned either way.
    """
    start = time.perf_counter()
    say: Report = progress or (lambda msg: None)
    onnx_path = Path(onnx_path)
    options = options or BuildOptions()
    trt = backend if isinstance(backend, TrtBackend) else load_backend(backend)
    info = read_onnx_info(onnx_path)
    spec = default_spec(info) if spec is None else coerce_spec(spec)
    if info.load_error is not None:
        _parse_only(trt, onnx_path)  # raises with TensorRT's parser message if it fails too
        raise EngineError(f"{onnx_path}: not a readable ONNX model ({info.load_error})")
    plan = resolve_options(options, trt, info)
    check_sizes(info, spec)
    if output is not None:
        ensure_writable_parent(output)  # before a build of minutes
    name = default_engine_name(onnx_path, spec, options, plan.precision)
    key = cache_key(onnx_sha256=info.sha256, shapes=spec.to_json(), options=options.to_json(),
                    flavour=trt.flavour, version=trt.version, targets=plan.key_targets(), typing=plan.typing)
    for note in plan.notes:
        say(f"note: {note}")

    if not cache:
        target = Path(output) if output else onnx_path.parent / name
        data, meta = _build(trt, info, spec, options, plan, key, target, say)
        _write(target, data, meta, say)
        return EngineArtifact(target, sidecar_path(target), meta, False, key, time.perf_counter() - start,
                              plan.notes)

    cached_name = f"{name.removesuffix('.trt')}.{key[:16]}.trt"
    built: list[EngineMetadata] = []

    def build(tmp: Path) -> None:
        say(f"cache miss (key {key[:16]}): building {name} with {trt}")
        data, meta = _build(trt, info, spec, options, plan, key, tmp.with_name(cached_name), say)
        tmp.write_bytes(data)  # renamed into place by the cache once this returns
        meta.write(sidecar_path(tmp.with_name(cached_name)))
        built.append(meta)

    def verify(path: Path) -> None:
        """The sidecar check: an edited, truncated or foreign engine is rebuilt in place."""
        try:
            found = verify_engine(path, backend=trt)
            if found.cache_key != key:
                raise EngineError(f"cached engine {path.name} has key {found.cache_key[:16]}..., expected "
                                  f"{key[:16]}...")
        except EngineError as exc:
            say(f"cached engine rejected, rebuilding: {exc}")
            raise

    root = Path(cache_dir) if cache_dir else None
    engine_file = cached_artifact("engines", {"engine_key": key}, build, ".trt", root=root, name=cached_name,
                                  verify=verify, progress=say)
    hit = not built
    meta = built[0] if built else EngineMetadata.read(sidecar_path(engine_file))
    if hit:
        say(f"cache hit: {engine_file} (key {key[:16]}, built {meta.build['time_utc']} in "
            f"{meta.build['seconds']:.1f} s)")
    path = engine_file
    if output is not None:
        path = _place_copy(engine_file, meta, Path(output), say)
    return EngineArtifact(path, sidecar_path(path), meta, hit, key, time.perf_counter() - start, plan.notes)


def _write(target: Path, data: bytes, meta: EngineMetadata, say: Report) -> None:
    with atomic_path(target, expected_bytes=len(data)) as tmp:
        tmp.write_bytes(data)
    meta.write_beside(target)
    say(f"  wrote {target} (+ {sidecar_path(target).name})")


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
    copy.write_beside(dst)
    say(f"wrote {dst} and {dst_meta.name}")
    return dst


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
           key: str, target: Path, say: Report) -> tuple[bytes, EngineMetadata]:
    """Parse, check and build; returns the engine bytes and the sidecar for `target` (written by the caller)."""
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
    applied = config_read_back(trt, config, plan, options)
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

    sparsity = sparsity_report(trt, data, options, log)
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
    say(f"  engine ready in {time.perf_counter() - t0:.1f} s total")
    return data, meta


