"""The backend table: every way this project can run the encoder, as data.

A row names a backend, its precision, whether its artefact fixes the input shape (`per_size`: one
runner per batch x size, e.g. TensorRT engines and AOTInductor packages), how to open a runner over
an encoder (`open`: loaders build or fetch the artefact, then a runner wraps it), and a cheap probe
that says why it cannot run on a device *before* anything is exported or built.

Everything that loops over backends (compare, bench, verify, the fidelity and benchmark test pools,
the CLI's `--backend` choices) reads this table, so adding a backend is one row here plus one runner
file in `runners/`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from .errors import BackendUnavailable, LsegError
from .runners.base import Runner
from .sizes import Size


@dataclass(frozen=True)
class OpenRequest:
    """Where and at what shape a runner is wanted (shape matters only for `per_size` backends)."""

    device: str = "cpu"
    size: Size = (384, 384)
    batch: int = 1
    compile_mode: str | None = None


@dataclass(frozen=True)
class Backend:
    name: str
    precision: str
    description: str
    per_size: bool
    open: Callable[..., Runner]  # (encoder, precision, OpenRequest) -> a runner, not yet activated
    probe: Callable[[str], str | None]  # device -> why it cannot run there, None when it can
    # each input shape is compiled or built on its own: callers keep the batch size fixed (pad a short
    # batch) rather than pay a new compilation or build for the last, smaller batch
    specialised: bool = False
    # device type -> why default sweeps leave this backend out there (it costs minutes); runs when named
    skipped_by_default: Mapping[str, str] = field(default_factory=dict)


def _cuda_reason(device: str) -> str | None:
    from .engine.backend import cuda_unavailable_reason

    return cuda_unavailable_reason(device)


def _onnxruntime_reason(device: str) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed: pip install 'lseg-encoder[onnx]'"
    if str(device).startswith("cuda"):
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return ("would run on cpu, not cuda: this onnxruntime has no CUDAExecutionProvider "
                    f"(providers here: {', '.join(onnxruntime.get_available_providers())}); "
                    "pip install 'lseg-encoder[onnx-gpu]'")
    return None


def _tensorrt_reason(device: str) -> str | None:
    from .engine.backend import execution_unavailable_reason

    return execution_unavailable_reason(device)


def _open_torch(encoder, precision: str, request: OpenRequest) -> Runner:
    from .runners.torch_runner import TorchRunner

    return TorchRunner(encoder, precision, request.device)


def _open_compiled(encoder, precision: str, request: OpenRequest) -> Runner:
    from .runners.compiled_runner import CompiledRunner

    cuda = str(request.device).startswith("cuda")
    mode = request.compile_mode or ("reduce-overhead" if cuda else "default")
    return CompiledRunner(encoder, precision, request.device, mode=mode)


def _open_onnxruntime(encoder, precision: str, request: OpenRequest) -> Runner:
    from .loaders import onnx_file
    from .runners.onnxruntime_runner import OnnxRuntimeRunner

    providers = ["CPUExecutionProvider"] if str(request.device) == "cpu" else None
    return OnnxRuntimeRunner(onnx_file(encoder, precision=precision), providers=providers)


def _open_tensorrt(encoder, precision: str, request: OpenRequest) -> Runner:
    from .loaders import engine_file, onnx_file
    from .runners.tensorrt_runner import TensorRTRunner

    artifact = engine_file(encoder, precision=precision, shape=(request.batch, *request.size))
    return TensorRTRunner(artifact, device=request.device, cuda_graph=True,
                          onnx_path=onnx_file(encoder, precision=precision))


def _open_aoti(encoder, precision: str, request: OpenRequest) -> Runner:
    from .loaders import aoti_package
    from .runners.aoti_runner import AOTIRunner

    device_type = torch.device(request.device).type
    return AOTIRunner(aoti_package(encoder, precision=precision, size=request.size, batch=request.batch,
                                   device=device_type))


def _rows(*rows: Backend) -> dict[str, Backend]:
    return {row.name: row for row in rows}


BACKENDS: dict[str, Backend] = _rows(
    Backend("torch", "fp32", "PyTorch eager fp32 (the reference)", False, _open_torch, _cuda_reason),
    Backend("torch-fp16", "fp16", "PyTorch eager, fp16 autocast", False, _open_torch, _cuda_reason,
            skipped_by_default={"cpu": "fp16 autocast on CPU is emulated (several times slower than fp32); it runs "
                                       "by default with CUDA"}),
    Backend("compiled", "fp16", "torch.compile fp16 with fp32 islands, BN folded, CUDA graphs on GPU", False,
            _open_compiled, _cuda_reason, specialised=True,
            skipped_by_default={"cpu": "compiled fp16 targets CUDA (CUDA graphs); on CPU name it explicitly "
                                       "(minutes of compilation)"}),
    Backend("compiled-fp32", "fp32", "torch.compile fp32, BN folded", False, _open_compiled, _cuda_reason,
            specialised=True,
            skipped_by_default={"cpu": "torch.compile takes minutes per shape on CPU; name it explicitly to run it",
                                "cuda": "the fp32 twin of `compiled` costs another compilation per shape; name "
                                        "it to run it"}),
    Backend("onnxruntime", "fp32", "ONNX Runtime, fp32 ONNX (CUDA EP when installed, else CPU)", False,
            _open_onnxruntime, _onnxruntime_reason),
    Backend("onnxruntime-fp16", "fp16", "ONNX Runtime, fp16 ONNX with fp32 islands", False, _open_onnxruntime,
            _onnxruntime_reason),
    Backend("tensorrt", "fp16", "TensorRT engine from the fp16 ONNX", True, _open_tensorrt, _tensorrt_reason,
            specialised=True),
    Backend("tensorrt-fp32", "fp32", "TensorRT engine from the fp32 ONNX", True, _open_tensorrt,
            _tensorrt_reason, specialised=True),
    Backend("aoti", "fp16", "AOTInductor package", True, _open_aoti, _cuda_reason, specialised=True,
            skipped_by_default={"cpu": "AOTInductor packaging takes minutes per shape on CPU; name it explicitly "
                                       "to run it",
                                "cuda": "AOTInductor packaging takes minutes per shape, and loading CUDA packages "
                                        "from Python crashed on torch 2.11 (docs/cpp.md); name it explicitly to "
                                        "run it"}),
)


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise LsegError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None


def check_backends(names) -> list[str]:
    """The names, each checked against the table (the first unknown one is an error)."""
    names = list(names)
    for name in names:
        get_backend(name)
    return names


def unavailable_reason(name: str, device: str) -> str | None:
    """Why `name` cannot run on `device` (None: it can), without exporting or building anything."""
    return get_backend(name).probe(str(device))


def make_runner(backend: str, encoder, *, device: str = "cpu", size: Size = (384, 384), batch: int = 1,
                compile_mode: str | None = None) -> Runner:
    """A (not yet activated) runner for `backend` over `encoder`.

    The probe runs first, so a backend that cannot execute here raises `BackendUnavailable` before
    any ONNX export or engine build; artefacts then come from the cache (`loaders`).
    """
    row = get_backend(backend)
    reason = row.probe(str(device))
    if reason:
        raise BackendUnavailable(reason)
    request = OpenRequest(str(device), (int(size[0]), int(size[1])), int(batch), compile_mode)
    return row.open(encoder, row.precision, request)
