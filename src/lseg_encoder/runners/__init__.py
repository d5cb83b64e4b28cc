"""Backends behind one interface; see `base.Runner`. Optional backends are imported lazily.

`make_runner(backend, ...)` builds any backend by name, so the CLI, fidelity tests, benchmarks and
segmentation choose a backend with a string and never import backend modules themselves.
"""

from __future__ import annotations

from .base import InputSpec, Runner
from .torch_runner import TorchRunner

# backend name -> (precision, what it is)
BACKENDS = {
    "torch": ("fp32", "PyTorch eager fp32 (the reference)"),
    "torch-fp16": ("fp16", "PyTorch eager, fp16 autocast"),
    "compiled": ("fp16", "torch.compile fp16 with fp32 islands, BN folded, CUDA graphs on GPU"),
    "compiled-fp32": ("fp32", "torch.compile fp32, BN folded"),
    "onnxruntime": ("fp32", "ONNX Runtime, fp32 ONNX (CUDA EP when installed, else CPU)"),
    "onnxruntime-fp16": ("fp16", "ONNX Runtime, fp16 ONNX with fp32 islands"),
    "tensorrt": ("fp16", "TensorRT engine from the fp16 ONNX"),
    "tensorrt-fp32": ("fp32", "TensorRT engine from the fp32 ONNX"),
    "aoti": ("fp16", "AOTInductor package"),
}


def make_runner(backend: str, encoder, *, device: str = "cpu", size: tuple[int, int] = (384, 384),
                batch: int = 1, compile_mode: str | None = None) -> Runner:
    """A (not yet activated) runner for `backend` over `encoder` (an LSegEncoder).

    ONNX files and engines are taken from the artefact cache and built on first use, as the seed's
    benchmark did; `size`/`batch` only matter for static artefacts (engines, AOTI packages).
    """
    from ..errors import LsegError

    if backend not in BACKENDS:
        raise LsegError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    precision = BACKENDS[backend][0]
    if backend in ("torch", "torch-fp16"):
        return TorchRunner(encoder, precision, device)
    if backend in ("compiled", "compiled-fp32"):
        from .compiled_runner import CompiledRunner

        mode = compile_mode or ("reduce-overhead" if str(device).startswith("cuda") else "default")
        return CompiledRunner(encoder, precision, device, mode=mode)
    if backend.startswith("onnxruntime"):
        from ..export.onnx import cached_onnx
        from .onnxruntime_runner import OnnxRuntimeRunner

        providers = ["CPUExecutionProvider"] if str(device) == "cpu" else None
        return OnnxRuntimeRunner(cached_onnx(encoder, precision=precision, dynamic=True), providers=providers)
    if backend.startswith("tensorrt"):
        from .tensorrt_runner import runner_for_encoder

        return runner_for_encoder(encoder, precision=precision, size=size, batch=batch, device=device)
    from .aoti_runner import runner_for_encoder as aoti_for_encoder

    return aoti_for_encoder(encoder, precision=precision, size=size, batch=batch, device=device)


__all__ = ["BACKENDS", "InputSpec", "Runner", "TorchRunner", "make_runner"]
