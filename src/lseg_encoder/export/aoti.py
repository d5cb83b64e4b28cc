"""AOTInductor packages (`.pt2`) of the encoder: one static input shape, loadable from Python and C++.

`package_aoti` exports the encoder with `torch.export` and compiles it with
`torch._inductor.aoti_compile_and_package`. The package runs without Python through
`torch::inductor::AOTIModelPackageLoader` (`cpp/`, `lseg_cpp --aoti`) and from Python through
`runners.AOTIRunner`; both read the same `lseg.*` metadata strings stored in the package, so neither
needs the checkpoint or the config to know the input shape, the precision or the device.

Input and output are always float32 (normalised image in, unit-norm features out), whatever the
precision, so every caller passes the same tensors. fp16 packages hold fp16 weights and compute in
fp16, with the final channel normalisation in fp32 (`model.fuse.LowPrecisionEncoder`, the same fp16 graph
with fp32 islands that the ONNX exporter and the compiled runner use, rather than autocast: the
exported graph then states every dtype and the package stores fp16 weights).

Inductor generates code for the CPU ISA (or GPU compute capability) of the machine that compiles,
so a package is tied to that kind of machine; the runner checks this from the metadata before
loading the shared library.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..configs import EncoderConfig
from ..errors import BackendUnavailable, LsegError
from ..model import LSegEncoder
from ..model.fuse import LowPrecisionEncoder
from ..sizes import check_size
from ..store.atomic import atomic_path, ensure_writable_parent

PRECISIONS = ("fp32", "fp16")
DEVICES = ("cpu", "cuda")
METADATA_SCHEMA = "1"
_GRAPH_REVISION = "3"  # bump when the exported graph changes, so cached packages are rebuilt
INPUT_NAME = "image"


class PackageError(LsegError):
    """An AOTInductor package is missing, corrupt, foreign, or does not fit the request."""


@dataclass(frozen=True)
class AOTIPackageSpec:
    """What a package computes; stored as `lseg.*` strings in the package metadata."""

    backbone: str
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    precision: str
    device: str
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # image normalisation, for callers that decode
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)   # images themselves (lseg_cpp extract --input X.jpg)
    synthetic: bool = False

    def to_metadata(self) -> dict[str, str]:
        return {
            "lseg.schema": METADATA_SCHEMA,
            "lseg.backbone": self.backbone,
            "lseg.input_name": INPUT_NAME,
            "lseg.input_shape": ",".join(map(str, self.input_shape)),
            "lseg.output_shape": ",".join(map(str, self.output_shape)),
            "lseg.dtype": "float32",
            "lseg.precision": self.precision,
            "lseg.device": self.device,
            "lseg.mean": ",".join(map(repr, self.mean)),
            "lseg.std": ",".join(map(repr, self.std)),
            "lseg.synthetic": "1" if self.synthetic else "0",
            "lseg.torch_version": torch.__version__,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "package") -> AOTIPackageSpec:
        if "lseg.schema" not in meta:
            raise PackageError(f"{source}: an AOTInductor package without lseg metadata (not written by "
                               "`lseg-encoder package-aoti`)")
        if meta["lseg.schema"] != METADATA_SCHEMA:
            raise PackageError(f"{source}: lseg metadata schema {meta['lseg.schema']!r}, this version reads "
                               f"{METADATA_SCHEMA!r}; re-package it")
        try:
            return cls(
                backbone=meta["lseg.backbone"],
                input_shape=_parse_shape(meta["lseg.input_shape"]),
                output_shape=_parse_shape(meta["lseg.output_shape"]),
                precision=meta["lseg.precision"],
                device=meta["lseg.device"],
                mean=tuple(float(v) for v in meta["lseg.mean"].split(",")),
                std=tuple(float(v) for v in meta["lseg.std"].split(",")),
                synthetic=meta.get("lseg.synthetic") == "1",
            )
        except (KeyError, ValueError) as exc:
            raise PackageError(f"{source}: malformed lseg metadata ({exc})") from None

    @property
    def size(self) -> tuple[int, int]:
        return self.input_shape[2], self.input_shape[3]


def _parse_shape(text: str) -> tuple[int, int, int, int]:
    dims = tuple(int(d) for d in text.split(","))
    if len(dims) != 4:
        raise ValueError(f"shape {text!r} is not 4-D")
    return dims  # type: ignore[return-value]


@dataclass(frozen=True)
class AOTIPackageResult:
    path: Path
    spec: AOTIPackageSpec
    export_s: float
    compile_s: float

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


class ContiguousOutput(nn.Module):
    """Returns the features NCHW-contiguous, as the eager encoder does.

    Export's fake tensors give the CPU convolutions channels-last strides, and AOTInductor keeps the
    exported output strides, so without this the package would return an (N,C,H,W) view of NHWC
    memory: callers that need NCHW memory (numpy, .npy files, the C++ runner's host buffer) would
    pay a transposing copy outside the compiled graph instead of a fused write inside it.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).contiguous()


def _say(progress: Callable[[str], None] | None, text: str) -> None:
    if progress is not None:
        progress(text)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def export_encoder(encoder: LSegEncoder, size: tuple[int, int], batch: int = 1, precision: str = "fp32",
                   device: str = "cpu") -> torch.export.ExportedProgram:
    """`torch.export` of the encoder (fp32 or `LowPrecisionEncoder` fp16) at one static input shape."""
    if precision not in PRECISIONS:
        raise LsegError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    if device not in DEVICES:
        raise LsegError(f"unknown device {device!r}; use one of {DEVICES}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("cannot package for CUDA: torch.cuda.is_available() is False")
    if batch < 1:
        raise LsegError(f"batch must be >= 1, got {batch}")
    height, width = size
    check_size(encoder.config, height, width)
    model = encoder.to(device, torch.float32).eval()
    if precision == "fp16":
        model = LowPrecisionEncoder(model, torch.float16).eval()
    model = ContiguousOutput(model).eval()
    example = torch.zeros(batch, 3, height, width, device=device)
    with torch.no_grad():
        return torch.export.export(model, (example,), strict=False)


def package_aoti(encoder: LSegEncoder, output: str | os.PathLike, size: tuple[int, int], batch: int = 1,
                 precision: str = "fp32", device: str = "cpu",
                 progress: Callable[[str], None] | None = _stderr) -> AOTIPackageResult:
    """Export and AOT-compile `encoder` into the `.pt2` package `output` (written atomically).

    `progress` receives one line per phase with its duration (None: silent).
    """
    output = Path(output)
    if output.suffix != ".pt2":
        raise LsegError(f"{output}: an AOTInductor package must end in .pt2")
    ensure_writable_parent(output)  # before minutes of export and compilation
    config: EncoderConfig = encoder.config
    height, width = size
    spec = AOTIPackageSpec(
        backbone=config.name,
        input_shape=(batch, 3, height, width),
        output_shape=(batch, config.out_dim, *config.output_size(height, width)),
        precision=precision,
        device=device,
        mean=tuple(config.mean_std[0]),
        std=tuple(config.mean_std[1]),
        synthetic=bool(getattr(encoder, "synthetic", False)),
    )
    _say(progress, f"package-aoti: exporting {config.name} {precision} {device} input {spec.input_shape}")
    t0 = time.perf_counter()
    program = export_encoder(encoder, size, batch, precision, device)
    export_s = time.perf_counter() - t0
    _say(progress, f"package-aoti: exported in {export_s:.1f} s; compiling with AOTInductor "
                   "(tens of seconds on CPU for tiny, minutes for ViT-L)")
    # A private folder beside the target, renamed into place: nothing partial under the final name,
    # and the archive's root folder is the target's stem rather than a temp name.
    with atomic_path(output, folder=True) as tmp_path:
        t0 = time.perf_counter()
        with torch.no_grad():
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(tmp_path),
                inductor_configs={"aot_inductor.metadata": spec.to_metadata()},
            )
        compile_s = time.perf_counter() - t0
    result = AOTIPackageResult(output, spec, export_s, compile_s)
    _say(progress, f"package-aoti: compiled in {compile_s:.1f} s; wrote {output} "
                   f"({result.size_bytes / 2**20:.1f} MiB)")
    return result


def read_package_metadata(path: str | os.PathLike, model_name: str = "model") -> dict[str, str]:
    """The metadata strings of a `.pt2` package, read from the archive without loading its library."""
    import json

    path = Path(path)
    if not path.exists():
        raise PackageError(f"{path}: package file not found")
    if path.is_dir():
        raise PackageError(f"{path}: is a directory, expected a .pt2 package file")
    try:
        with zipfile.ZipFile(path) as archive:
            marker = f"data/aotinductor/{model_name}/"
            names = [n for n in archive.namelist() if marker in n and n.endswith("wrapper_metadata.json")]
            if not names:
                raise PackageError(f"{path}: a zip archive without an AOTInductor model {model_name!r} "
                                   "(not an AOTInductor .pt2 package)")
            return json.loads(archive.read(names[0]))
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"{path}: not an AOTInductor .pt2 package (not a readable zip archive: {exc})") \
            from None
    except ValueError as exc:
        raise PackageError(f"{path}: corrupt package metadata ({exc})") from None


def read_package_spec(path: str | os.PathLike) -> AOTIPackageSpec:
    return AOTIPackageSpec.from_metadata(read_package_metadata(path), str(path))


def package_unavailable_reason(meta: dict[str, str]) -> str | None:
    """Why a package with this metadata cannot run on this machine, or None if it can."""
    import platform

    device = meta.get("AOTI_DEVICE_KEY", meta.get("lseg.device", "cpu"))
    if device == "cuda":
        if not torch.cuda.is_available():
            return ("the package was compiled for CUDA but torch.cuda.is_available() is False on this "
                    "machine; package it with --device cpu here")
        want = meta.get("AOTI_COMPUTE_CAPABILITY", "")
        major, minor = torch.cuda.get_device_capability()
        if want and want != f"{major}{minor}":
            return (f"the package was compiled for compute capability {want}, this GPU is {major}{minor}; "
                    "re-package it on this machine")
    elif device != "cpu":
        return f"the package targets device {device!r}; this runner supports cpu and cuda"
    plat, machine = meta.get("AOTI_PLATFORM"), meta.get("AOTI_MACHINE")
    if plat and plat != sys.platform:
        return f"the package was compiled for platform {plat}, this is {sys.platform}"
    if machine and machine != platform.machine():
        return f"the package was compiled for {machine}, this machine is {platform.machine()}"
    isa = meta.get("AOTI_CPU_ISA", "")
    here = torch.backends.cpu.get_cpu_capability()
    if device == "cpu" and "AVX512" in isa.split() and "AVX512" not in here:
        return f"the package's CPU kernels use {isa}, this CPU supports only {here}; re-package it here"
    return None


def _model_code_digest() -> str:
    """The model's source (and this module's): a changed forward must not reuse a stale package."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for path in sorted([*(package / "model").glob("*.py"), Path(__file__).resolve()]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def cached_aoti_package(encoder: LSegEncoder, size: tuple[int, int], batch: int = 1, precision: str = "fp32",
                        device: str = "cpu", progress: Callable[[str], None] | None = _stderr) -> Path:
    """`package_aoti` into the artefact cache, keyed by everything that determines the package
    (model code, weights, config, shape, precision, device, torch version, CPU ISA / GPU
    capability), built once under a file lock."""
    from ..store.artifacts import cached_artifact, weights_fingerprint

    if device == "cuda" and torch.cuda.is_available():
        target = "sm" + "".join(map(str, torch.cuda.get_device_capability()))
    else:
        target = torch.backends.cpu.get_cpu_capability()
    key = {"code": _model_code_digest(), "backbone": encoder.config.name, "config": repr(encoder.config),
           "weights": weights_fingerprint(encoder), "size": list(size), "batch": batch, "precision": precision,
           "device": device, "torch": torch.__version__, "target": target, "schema": METADATA_SCHEMA,
           "graph_revision": _GRAPH_REVISION}
    stem = f"{encoder.config.name}_{size[0]}x{size[1]}_b{batch}_{precision}_{device}_"
    build = lambda tmp: package_aoti(encoder, tmp, size, batch, precision, device, progress)  # noqa: E731
    return cached_artifact("aoti", key, build, suffix=".pt2", stem=stem)
