"""Loaders: encoder + backend + shape -> an artefact on disk (exported, validated, cached).

This is the one place where exporters, validators and the engine builder meet. Exporters
(`export/`) only write files; runners (`runners/`) only run what they are given; the backend table
(`backends.py`) asks these functions for the artefact a runner needs. Every artefact comes from the
one cache (`store.cache.cached_artifact`), keyed by the weights fingerprint, which is computed once
per encoder (`store.fingerprint`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from . import __version__
from .errors import ExportError
from .fidelity.metrics import check, feature_metrics
from .model import LSegEncoder
from .model.fuse import placed
from .sizes import Shape, Size
from .store.cache import cached_artifact
from .store.fingerprint import weights_fingerprint

Progress = Callable[[str], None]


def onnx_validator(encoder: LSegEncoder, precision: str, progress: Progress | None = None):
    """A `validate` hook for `export.onnx.export_onnx`: ONNX Runtime (CPU) against PyTorch fp32 at
    each size, judged by the tolerance table; raises ExportError past tolerance."""
    from .runners.onnxruntime_runner import OnnxRuntimeRunner

    say = progress or (lambda msg: None)

    def validate(path: Path, sizes: list[Size], batch: int) -> list:
        reference = placed(encoder, "cpu", torch.float32)
        verdicts = []
        with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
            for h, w in sizes:
                x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(h * 10007 + w)) * 2 - 1
                with torch.inference_mode():
                    ref = reference(x)
                verdict = check(feature_metrics(runner.infer(x), ref), precision)
                say(f"  check {h}x{w}: {verdict}")
                verdicts.append(verdict)
                if not verdict:
                    raise ExportError(f"ONNX Runtime output at {h}x{w} is not faithful to PyTorch: "
                                      + "; ".join(verdict.failures))
        return verdicts

    return validate


def export_validated(encoder: LSegEncoder, path: str | Path, *, precision: str = "fp32", check: bool = True,
                     progress: Progress | None = None, **options):
    """`export_onnx` with the ONNX Runtime check (unless `check=False`); what `lseg-encoder export` runs."""
    from .export.onnx import export_onnx

    validate = onnx_validator(encoder, precision, progress) if check else None
    return export_onnx(encoder, path, precision=precision, validate=validate, progress=progress, **options)


def onnx_file(encoder: LSegEncoder, *, precision: str = "fp32", dynamic: bool = True, size: Size = (384, 384),
              batch: int = 1, opset: int = 18, check: bool = True, progress: Progress | None = None) -> Path:
    """The ONNX file for these settings from the artefact cache, exported (and validated) once."""
    key = {"weights": weights_fingerprint(encoder), "backbone": encoder.config.name, "precision": precision,
           "dynamic": dynamic, "size": None if dynamic else list(size), "trace_size": list(size),
           "batch": batch, "opset": opset, "torch": torch.__version__, "lseg_encoder": __version__}
    return cached_artifact(
        "onnx", key, lambda tmp: export_validated(encoder, tmp, precision=precision, dynamic=dynamic, size=size,
                                                  batch=batch, opset=opset, check=check, progress=progress),
        suffix=".onnx")


def engine_file(encoder: LSegEncoder, *, precision: str = "fp16", shape: Shape = (1, 384, 384),
                progress: Progress | None = None):
    """The static TensorRT engine (an `EngineArtifact`) for `encoder` at `shape` (BxHxW), built from
    the cached dynamic ONNX of that precision; the engine cache keys it by the ONNX bytes and options."""
    from .engine.build import build_engine
    from .engine.options import ShapeSpec

    return build_engine(onnx_file(encoder, precision=precision), ShapeSpec.static(*shape), progress=progress)


def aoti_package(encoder: LSegEncoder, *, precision: str = "fp32", size: Size = (384, 384), batch: int = 1,
                 device: str = "cpu", progress: Progress | None = None, output_dtype: str = "float32") -> Path:
    """The AOTInductor package of `encoder` at (batch, *size) from the artefact cache, keyed by
    everything that determines it (model code, weights, shape, precision, device, torch version,
    CPU ISA or GPU capability), compiled once."""
    from .export.aoti import GRAPH_REVISION, model_code_digest, package_aoti
    from .export.metadata import AOTI_METADATA_SCHEMA

    if device == "cuda" and torch.cuda.is_available():
        target = "sm" + "".join(map(str, torch.cuda.get_device_capability()))
    else:
        target = torch.backends.cpu.get_cpu_capability()
    key = {"code": model_code_digest(), "backbone": encoder.config.name, "config": repr(encoder.config),
           "weights": weights_fingerprint(encoder), "size": list(size), "batch": batch, "precision": precision,
           "device": device, "torch": torch.__version__, "target": target, "schema": AOTI_METADATA_SCHEMA,
           "graph_revision": GRAPH_REVISION, "output_dtype": output_dtype}
    out = "" if output_dtype == "float32" else "_out16"
    stem = f"{encoder.config.name}_{size[0]}x{size[1]}_b{batch}_{precision}{out}_{device}_"
    build = lambda tmp: package_aoti(encoder, tmp, size, batch, precision, device, progress, output_dtype)  # noqa: E731
    return cached_artifact("aoti", key, build, suffix=".pt2", stem=stem)
