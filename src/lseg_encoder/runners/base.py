"""One runner interface over every backend (PyTorch, ONNX Runtime, TensorRT, AOTInductor, ...).

Lifecycle (after Polygraphy's runners): construct cheaply; acquire heavy resources in `activate()`
(or `with runner:`); `infer(x)` validates the input against `input_spec` and the backbone's size rule,
then calls the backend's `_infer_impl`. A backend is a small subclass that overrides `_activate_impl`,
`_deactivate_impl` and `_infer_impl`, so callers (fidelity, benchmarks, segmentation, CLI) never
change when a backend is added.

`activate()` raises `BackendUnavailable` with the exact reason when the backend cannot run on this
machine (no CUDA, unsupported GPU, package missing); the test layer turns that into a skip.

Host output (issue 13, end-to-end budget): the fp32 feature map is large (424 MB at 910 px), so
the device -> host copy, not the model, dominates end-to-end time. `infer(..., out_dtype=torch.float16)`
casts on the device before the copy (half the bytes; fp16 keeps ~3 significant digits of unit
vectors, far inside the fp16 tolerance row), and `out=` copies into a caller's pinned buffer that is
reused across calls (`host_buffer()` makes one). For a stream of frames, `runners.pipeline.stream_infer`
overlaps the copy of frame i with the compute of frame i+1.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from ..configs import EncoderConfig
from ..devices import parse_device
from ..errors import InputSizeError, LsegError
from ..sizes import check_size


@dataclass(frozen=True)
class InputSpec:
    """The runner's single input. `None` in `shape` = dynamic; `min_shape`/`max_shape` bound a
    dynamic profile where the backend has one (TensorRT)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int | None, int | None, int | None, int | None]
    min_shape: tuple[int, int, int, int] | None = None
    max_shape: tuple[int, int, int, int] | None = None


def host_buffer(shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A host tensor for `infer(..., out=)`: pinned where CUDA exists (fast, asynchronous copies)."""
    return torch.empty(tuple(shape), dtype=dtype, pin_memory=torch.cuda.is_available())


def to_host_tensor(t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Device -> host copy through pinned memory (torch's caching host allocator reuses the block),
    several times faster than a copy into pageable memory for feature maps of tens of MB. With
    `out`, the copy lands in that host tensor (same shape and dtype), which is returned."""
    if out is not None:
        if out.device.type != "cpu" or out.shape != t.shape or out.dtype != t.dtype:
            raise LsegError(f"out= must be a host tensor of shape {tuple(t.shape)} and dtype {t.dtype}, got "
                            f"{out.device.type} {tuple(out.shape)} {out.dtype}")
        out.copy_(t, non_blocking=t.device.type == "cuda" and out.is_pinned())
    elif t.device.type != "cuda":
        return t
    else:
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        out.copy_(t, non_blocking=True)
    if t.device.type == "cuda":
        torch.cuda.current_stream(t.device).synchronize()
    return out


def copy_to_host_behind(t: torch.Tensor, host: torch.Tensor, copier: torch.cuda.Stream) -> torch.cuda.Event:
    """Queue the copy of device tensor `t` into the pinned `host` on the stream `copier`, after the work
    already queued on the current stream (which writes `t`), and return the event that ends the copy.
    The current stream goes on meanwhile: the copy overlaps whatever is queued on it next. `t` stays
    reserved until the copy ends (the allocator would otherwise hand its memory to that next work)."""
    ready = torch.cuda.Event()
    ready.record(torch.cuda.current_stream(t.device))
    copier.wait_event(ready)
    with torch.cuda.stream(copier):
        host.copy_(t, non_blocking=True)
        done = torch.cuda.Event()
        done.record(copier)
    t.record_stream(copier)
    return done


class Runner(abc.ABC):
    """Base class of all backends. Subclasses set `backend`, `precision`, `config` and `device`."""

    backend: str = "abstract"
    # True where `_infer_impl` returns memory the next call overwrites (CUDA-graph pools): `infer`
    # then copies it before handing it out, unless a cast or a host copy makes a new tensor anyway.
    output_is_borrowed: bool = False

    def __init__(self, config: EncoderConfig, precision: str = "fp32", device: str | torch.device = "cpu"):
        self.config = config
        self.precision = precision
        self.device = parse_device(device)
        self.is_active = False

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"

    # lifecycle -----------------------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self._activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # inference -----------------------------------------------------------------------------------
    @property
    def input_spec(self) -> InputSpec:
        return InputSpec("image", torch.float32, (None, 3, None, None))

    def infer(self, x: torch.Tensor, *, to_host: bool = True, out_dtype: torch.dtype | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """x (B,3,H,W) float32, normalised -> features (B, out_dim, h, w), float32 by default.

        With `to_host=False` the result stays on the runner's device (no copy), for device-only
        timing and for pipelines that keep working on the GPU. `out_dtype` (e.g. torch.float16)
        casts on the device, before any copy. `out` (with `to_host=True`) is a host tensor to copy
        into and return, reused across calls by the caller (see `host_buffer`).
        """
        self.require_active()
        if out is not None and not to_host:
            raise LsegError("out= is a host buffer; it needs to_host=True")
        self.check_input(x)
        result = self.run_on_device(x, out_dtype, copy_borrowed=not to_host)
        return to_host_tensor(result, out) if to_host else result

    def run_on_device(self, x: torch.Tensor, out_dtype: torch.dtype | None = None, *,
                      copy_borrowed: bool = True) -> torch.Tensor:
        """The validated forward on the device, cast to `out_dtype`; no input check, no host copy."""
        result = self._infer_impl(x)
        want = out_dtype or torch.float32  # float32 features unless asked otherwise, whatever the backend wrote
        if result.dtype != want:
            return result.to(want)
        return result.clone() if self.output_is_borrowed and copy_borrowed else result

    def require_active(self) -> None:
        if not self.is_active:
            raise LsegError(f"runner {self.name} is not active; call activate() or use `with runner:`")

    def check_input(self, x: torch.Tensor) -> None:
        spec = self.input_spec
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputSizeError(f"{self.name}: expected a (B,3,H,W) tensor, got {shape}")
        if x.dtype != spec.dtype:
            raise LsegError(f"{self.name}: expected input dtype {spec.dtype}, got {x.dtype}")
        check_size(self.config, int(x.shape[2]), int(x.shape[3]))
        for axis, (want, got) in enumerate(zip(spec.shape, x.shape)):
            if want is not None and want != got:
                raise InputSizeError(f"{self.name}: input shape {tuple(x.shape)} does not match the static "
                                     f"shape {spec.shape} (axis {axis})")
        if spec.min_shape and spec.max_shape:
            if any(g < lo or g > hi for g, lo, hi in zip(x.shape, spec.min_shape, spec.max_shape)):
                raise InputSizeError(f"{self.name}: input shape {tuple(x.shape)} is outside the profile "
                                     f"min {spec.min_shape} .. max {spec.max_shape}")

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # backend hooks -------------------------------------------------------------------------------
    def _activate_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    def _deactivate_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    @abc.abstractmethod
    def _infer_impl(self, x: torch.Tensor) -> torch.Tensor:
        """x is validated; return the features on `self.device`."""
