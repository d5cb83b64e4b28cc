"""Which TensorRT is installed, and what it can do.

Two flavours share one Python API shape (Builder, OnnxParser, IBuilderConfig, Runtime,
execute_async_v3):

* `tensorrt` (TensorRT 10 or 11, data-centre and workstation GPUs). TensorRT 10 still has the
  weakly-typed FP16 builder flag; TensorRT 11 removed it and every network is strongly typed.
  Engines are built on, and for, the GPU of the build machine.
* `tensorrt_rtx` (TensorRT-RTX, consumer/workstation RTX GPUs). Strongly typed only; builds ahead of
  time on a CPU-only machine for a list of compute capabilities (its `ComputeCapability` enum).

Capabilities are probed with `hasattr` on the imported module, never inferred from version
strings, so a new release that drops or adds an API is handled by what it actually exposes. The
module is imported lazily: `import lseg_encoder` never touches TensorRT.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..errors import BackendUnavailable

if TYPE_CHECKING:  # the TensorRT 10.13 API as `tensorrt-stubs` describes it (scripts/trt_typecheck.py)
    import tensorrt

FLAVOURS = ("tensorrt", "tensorrt_rtx")
_INSTALL_HINT = {
    "tensorrt": "pip install 'tensorrt>=10' (needs NVIDIA's download server and a CUDA GPU)",
    "tensorrt_rtx": "pip install tensorrt-rtx (or: pip install 'lseg-encoder[tensorrt-rtx]')",
}


class TensorRTApi(Protocol):
    """The part of the TensorRT Python API this package calls, typed from the TensorRT 10.13 stubs.

    Both flavours provide it (`tensorrt_rtx` mirrors `tensorrt`). Code reaches TensorRT only through
    `TrtBackend.module` of this type, so mypy checks every class, enum member and method it names;
    the assignment below checks that the real `tensorrt` module provides every member listed here.
    APIs only TensorRT-RTX has (`ComputeCapability`, `get_engine_validity`) are not in the stubs:
    they are probed with `getattr`/`hasattr`, and each direct call carries a narrow `type: ignore`.
    """

    Builder: type[tensorrt.Builder]
    BuilderFlag: type[tensorrt.BuilderFlag]
    IBuilderConfig: type[tensorrt.IBuilderConfig]
    Dims: type[tensorrt.Dims]
    ICudaEngine: type[tensorrt.ICudaEngine]
    ILogger: type[tensorrt.ILogger]
    IProgressMonitor: type[tensorrt.IProgressMonitor]
    LayerInformationFormat: type[tensorrt.LayerInformationFormat]
    MemoryPoolType: type[tensorrt.MemoryPoolType]
    NetworkDefinitionCreationFlag: type[tensorrt.NetworkDefinitionCreationFlag]
    OnnxParser: type[tensorrt.OnnxParser]
    ProfilingVerbosity: type[tensorrt.ProfilingVerbosity]
    Runtime: type[tensorrt.Runtime]
    TensorIOMode: type[tensorrt.TensorIOMode]


if TYPE_CHECKING:
    _STUBS_PROVIDE_THE_API: TensorRTApi = tensorrt


@dataclass
class CapturedLog:
    """Messages a TensorRT logger received, so errors can be reported with TensorRT's own words."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    def at_least(self, severity: str) -> list[str]:
        order = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")
        limit = order.index(severity)
        return [msg for sev, msg in self.messages if sev in order and order.index(sev) <= limit]

    def errors(self) -> list[str]:
        # TensorRT-RTX logs a harmless INTERNAL_ERROR about its thread-local log stream; leave it out.
        return [m for m in self.at_least("ERROR") if "Thread context has not been set" not in m]

    def clear(self) -> None:
        self.messages.clear()


@dataclass(frozen=True)
class TrtBackend:
    """An imported TensorRT flavour and the capabilities probed on it."""

    flavour: str
    version: str
    module: TensorRTApi = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.flavour} {self.version}"

    # typing ---------------------------------------------------------------------------------------
    @property
    def has_fp16_flag(self) -> bool:
        """TensorRT 10's weakly-typed `BuilderFlag.FP16` (removed in TensorRT 11, absent in RTX)."""
        return hasattr(self.module.BuilderFlag, "FP16")

    @property
    def strongly_typed_only(self) -> bool:
        return not self.has_fp16_flag

    @property
    def has_strongly_typed_flag(self) -> bool:
        return hasattr(self.module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")

    # builder config -------------------------------------------------------------------------------
    def builder_flag(self, name: str) -> Any | None:
        return getattr(self.module.BuilderFlag, name, None)

    def tactic_sources(self) -> dict[str, Any]:
        enum = getattr(self.module, "TacticSource", None)
        if enum is None:
            return {}
        return dict(enum.__members__)

    @property
    def has_optimization_level(self) -> bool:
        return hasattr(self.module.IBuilderConfig, "builder_optimization_level")

    @property
    def has_compute_capability_targets(self) -> bool:
        """TensorRT-RTX's ahead-of-time targets (`IBuilderConfig.set_compute_capability`)."""
        return hasattr(self.module, "ComputeCapability") and hasattr(
            self.module.IBuilderConfig, "set_compute_capability")

    def known_compute_capabilities(self) -> list[str]:
        """Compute capabilities the backend can target ahead of time ('8.6', '12.0', ...), from its enum."""
        enum = getattr(self.module, "ComputeCapability", None)
        if enum is None:
            return []
        out = []
        for name in enum.__members__:
            m = re.fullmatch(r"SM(\d+)(\d)", name)
            if m:
                out.append(f"{int(m.group(1))}.{m.group(2)}")
        return out

    def compute_capability_member(self, cc: str) -> Any:
        major, minor = cc.split(".")
        enum = self.module.ComputeCapability  # type: ignore[attr-defined]  # TensorRT-RTX only, not in the stubs
        return getattr(enum, f"SM{major}{minor}")

    @property
    def builds_without_gpu(self) -> bool:
        """True for TensorRT-RTX (CPU-only ahead-of-time build); TensorRT proper needs the target GPU."""
        return self.has_compute_capability_targets

    @property
    def has_engine_inspector(self) -> bool:
        return hasattr(self.module.ICudaEngine, "create_engine_inspector")

    @property
    def has_engine_validity(self) -> bool:
        return hasattr(self.module.Runtime, "get_engine_validity")

    @property
    def has_progress_monitor(self) -> bool:
        return hasattr(self.module, "IProgressMonitor") and hasattr(
            self.module.IBuilderConfig, "progress_monitor")

    # logger ---------------------------------------------------------------------------------------
    def make_logger(self, capture: CapturedLog, min_severity: str = "INFO") -> tensorrt.ILogger:
        """An ILogger subclass instance that records messages at `min_severity` or worse."""
        if TYPE_CHECKING:
            from tensorrt import ILogger
        else:
            ILogger = self.module.ILogger  # this flavour's class: a base class must be the runtime's own
        order = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")
        limit = order.index(min_severity)

        class _Logger(ILogger):
            def __init__(self) -> None:
                ILogger.__init__(self)

            def log(self, severity: tensorrt.ILogger.Severity, msg: str) -> None:  # possibly from TensorRT's threads
                name = getattr(severity, "name", str(severity))
                if name in order and order.index(name) <= limit:
                    capture.messages.append((name, msg))

        return _Logger()


def dims(shape: tensorrt.Dims) -> list[int]:
    """A TensorRT `Dims` as ints (the API documents indexing and `len` on Dims, not iteration)."""
    return [int(shape[i]) for i in range(len(shape))]


def _import(flavour: str) -> ModuleType:
    """Import `flavour` and check it is the real runtime, not a package that only shares its name.

    `pip install tensorrt-stubs` creates a `tensorrt` namespace package holding only `.pyi` files:
    it imports, but has no API. Such a module is refused here so that `load_backend()` falls through
    to the next flavour instead of reporting "tensorrt unknown".
    """
    try:
        module = importlib.import_module(flavour)
    except Exception as exc:  # a broken install raises more than ImportError (OSError from libs, ...)
        raise BackendUnavailable(
            f"`import {flavour}` failed ({type(exc).__name__}: {exc}); install it: {_INSTALL_HINT[flavour]}"
        ) from None
    missing = [name for name in ("__version__", "Builder") if not hasattr(module, name)]
    if missing:
        where = getattr(module, "__file__", None) or ", ".join(getattr(module, "__path__", [])) or "?"
        raise BackendUnavailable(
            f"`import {flavour}` found {where}, which lacks TensorRT's API ({' and '.join(missing)}; "
            f"a type-stubs-only package such as tensorrt-stubs?); install it: {_INSTALL_HINT[flavour]}")
    return module


def load_backend(name: str | None = None) -> TrtBackend:
    """Import TensorRT: `name` in FLAVOURS, or None for the first importable (tensorrt, then RTX)."""
    if name is not None and name not in FLAVOURS:
        from ..errors import EngineError

        raise EngineError(f"unknown TensorRT backend {name!r}; use one of {', '.join(FLAVOURS)}")
    candidates = [name] if name else list(FLAVOURS)
    reasons = []
    for flavour in candidates:
        try:
            module = _import(flavour)
        except BackendUnavailable as exc:
            reasons.append(str(exc))
            continue
        # _import checked the API is there; the stubs are the type of what it found
        return TrtBackend(flavour, str(module.__version__), cast(TensorRTApi, module))
    raise BackendUnavailable("no TensorRT backend is importable: " + "; ".join(reasons))


def backend_available(name: str | None = None) -> tuple[bool, str]:
    """(available, reason) for building engines with `name` (or any flavour)."""
    try:
        backend = load_backend(name)
    except BackendUnavailable as exc:
        return False, str(exc)
    if not backend.builds_without_gpu:
        ok, reason = cuda_available()
        if not ok:
            return False, f"{backend} builds engines on the target GPU only, and {reason}"
    return True, f"{backend} is importable"


def cuda_available() -> tuple[bool, str]:
    """(available, reason) for a CUDA device usable through torch (the runner's device buffers)."""
    import torch

    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return False, (f"CUDA is not available (torch {torch.__version__} is a CPU-only build; "
                           "torch.cuda.is_available() is False)")
        return False, "CUDA is not available (torch.cuda.is_available() is False)"
    return True, f"CUDA device {torch.cuda.get_device_name()}"


def cuda_unavailable_reason(device) -> str | None:
    """Why `device` cannot be used here (None: it can): CUDA devices need `cuda_available()`, CPUs
    always can. The one check behind the backend table's probe and the torch runners."""
    if not str(device).startswith("cuda"):  # a name ("cuda:1") or a torch.device; unknown names are not ours
        return None
    ok, reason = cuda_available()
    return None if ok else reason


def execution_unavailable_reason(device=None, flavour: str | TrtBackend | None = None) -> str | None:
    """Why no engine of this flavour can execute here (None: it can), checked without building or
    loading anything: CUDA through torch, an importable runtime, and a GPU the flavour supports.
    The one check behind the backend table's probe, the runner, the layer inspector and Polygraphy's
    TrtRunner."""
    import torch

    ok, reason = cuda_available()
    if not ok:
        return f"TensorRT engines execute on CUDA only: {reason}"
    if device is not None and torch.device(device).type != "cuda":
        return f"TensorRT engines execute on CUDA devices, not {device}"
    try:
        trt = flavour if isinstance(flavour, TrtBackend) else load_backend(flavour)
    except BackendUnavailable as exc:
        return str(exc)
    cc = current_compute_capability(device)
    if trt.has_compute_capability_targets and cc not in trt.known_compute_capabilities():
        return (f"{trt} does not run on compute capability {cc} ({torch.cuda.get_device_name(device)}); "
                f"it supports {', '.join(trt.known_compute_capabilities())}")
    return None


def current_compute_capability(device=None) -> str | None:
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}.{minor}"
