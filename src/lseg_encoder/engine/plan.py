"""From build options to a concrete plan: what the ONNX is, what this TensorRT flavour can do with
it, what the engine will be called and keyed by. Nothing here builds; `engine.build` does.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EngineError
from .backend import TrtBackend, current_compute_capability
from .options import BuildOptions, Profile, ShapeSpec, default_engine_name, parse_shape
from .sidecar import sha256_file

KEY_VERSION = 1


# Documented default targets of TensorRT-RTX when no compute capability is set (its CPU-only AOT page).
RTX_DEFAULT_TARGETS_NOTE = ("tensorrt_rtx default: documented as compute capability 8.0, 8.6, 8.9, 12.0 "
                            "and later; Turing (7.5) only when targeted explicitly")

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


def cache_key(*, onnx_sha256: str, shapes: list, options: dict, flavour: str, version: str,
              targets: list | str | None, typing: str) -> str:
    """sha256 of a canonical JSON of everything that determines the engine bytes."""
    payload = {
        "key_version": KEY_VERSION, "onnx_sha256": onnx_sha256, "shapes": shapes, "options": options,
        "backend": {"flavour": flavour, "version": version, "typing": typing}, "targets": targets,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_sizes(info: OnnxInfo, spec: ShapeSpec) -> None:
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
