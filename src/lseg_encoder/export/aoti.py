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
exported graph then states every dtype and the package stores fp16 weights). fp16 packages for CUDA
are the compiled runner's graph since revision 8: its Triton kernels (attention, the fused
upsample + normalisation of `model.fused_finish`) and its Inductor settings
(`inductor_settings.inductor_defaults`).

Inductor generates code for the CPU ISA (or GPU compute capability) of the machine that compiles,
so a package is tied to that kind of machine; the runner checks this from the metadata before
loading the shared library.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..configs import EncoderConfig
from ..errors import BackendUnavailable, LsegError
from ..inductor_settings import inductor_defaults
from ..model import LSegEncoder
from ..model.fuse import LowPrecisionEncoder, placed
from ..model.fused_finish import FusedFinish, fused_finish_default
from ..model.gelu_epilogue import gelu_epilogue_default, use_gelu_epilogue
from ..model.kernel_attention import kernel_attention_default, use_kernel_attention
from ..sizes import check_size
from ..store.atomic import atomic_path, ensure_writable_parent
from .metadata import OUTPUT_DTYPES, AOTIPackageSpec

PRECISIONS = ("fp32", "fp16")
DEVICES = ("cpu", "cuda")
GRAPH_REVISION = "10"  # bump when the exported graph changes, so cached packages are rebuilt (10: raw row max)


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
    """Returns the features NCHW-contiguous, as the eager encoder does, in `dtype` (float16 packages
    write fp16 features from the normalisation kernel itself: half the bytes, no cast kernel after it).

    Export's fake tensors give the CPU convolutions channels-last strides, and AOTInductor keeps the
    exported output strides, so without this the package would return an (N,C,H,W) view of NHWC
    memory: callers that need NCHW memory (numpy, .npy files, the C++ runner's host buffer) would
    pay a transposing copy outside the compiled graph instead of a fused write inside it.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).to(self.dtype).contiguous()


def _say(progress: Callable[[str], None] | None, text: str) -> None:
    if progress is not None:
        progress(text)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def packaged_model(model: LSegEncoder, precision: str, device: str, dtype: torch.dtype) -> nn.Module:
    """The module a package compiles from `model` (already on `device`; a new module, `model` is not
    changed): fp32 as it is; fp16 as the compiled runner's graph, so that C++ and Python run the same
    kernels. Output: NCHW-contiguous unit features in `dtype`."""
    if precision == "fp16":
        # the decoder rewrite, the epilogue, the kernels: the same graph as the compiled runner's
        fused = fused_finish_default(precision, device)
        model = LowPrecisionEncoder(model, torch.float16, late_upsample=True, patch_gemm=True,
                                    readout_gemm=True, defer_upsample=fused).eval()
        if gelu_epilogue_default(precision, device):
            use_gelu_epilogue(model)
        if kernel_attention_default(precision, device):
            use_kernel_attention(model)  # the Triton kernel goes into the package (a `triton_op`)
        if fused:  # writes NCHW-contiguous features in `dtype` itself (another `triton_op`)
            return FusedFinish(model, dtype).eval()
    return ContiguousOutput(model, dtype).eval()


def package_inductor_configs(spec: AOTIPackageSpec) -> dict:
    """AOTInductor's settings for a package: its metadata strings, and the Inductor settings the
    compiled runner uses for the same precision and device."""
    return {"aot_inductor.metadata": spec.to_metadata(), **inductor_defaults(spec.precision, spec.device)}


def export_encoder(encoder: LSegEncoder, size: tuple[int, int], batch: int = 1, precision: str = "fp32",
                   device: str = "cpu", output_dtype: str = "float32") -> torch.export.ExportedProgram:
    """`torch.export` of the encoder (fp32 or `LowPrecisionEncoder` fp16) at one static input shape."""
    if output_dtype not in OUTPUT_DTYPES:
        raise LsegError(f"unknown output dtype {output_dtype!r}; use one of {', '.join(OUTPUT_DTYPES)}")
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
    model = packaged_model(placed(encoder, device, torch.float32), precision, device, getattr(torch, output_dtype))
    example = torch.zeros(batch, 3, height, width, device=device)
    with torch.no_grad():
        return torch.export.export(model, (example,), strict=False)


def package_aoti(encoder: LSegEncoder, output: str | os.PathLike, size: tuple[int, int], batch: int = 1,
                 precision: str = "fp32", device: str = "cpu",
                 progress: Callable[[str], None] | None = _stderr, output_dtype: str = "float32") -> AOTIPackageResult:
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
        output_dtype=output_dtype,
    )
    _say(progress, f"package-aoti: exporting {config.name} {precision} {device} input {spec.input_shape}")
    t0 = time.perf_counter()
    program = export_encoder(encoder, size, batch, precision, device, output_dtype)
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
                inductor_configs=package_inductor_configs(spec),
            )
        compile_s = time.perf_counter() - t0
    result = AOTIPackageResult(output, spec, export_s, compile_s)
    _say(progress, f"package-aoti: compiled in {compile_s:.1f} s; wrote {output} "
                   f"({result.size_bytes / 2**20:.1f} MiB)")
    return result


def model_code_digest() -> str:
    """The model's source, the Triton kernels packages compile in, the Inductor settings and this
    module: a changed forward or kernel must not reuse a stale package."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    sources = [*(package / "model").glob("*.py"), *(package / "kernels").glob("*.py"),
               package / "inductor_settings.py", Path(__file__).resolve()]
    for path in sorted(sources):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
