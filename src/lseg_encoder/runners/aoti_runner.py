"""AOTInductor backend: runs a `.pt2` package from `lseg_encoder.export.aoti.package_aoti`.

The package fixes the input shape, precision and device at packaging time; all three are read from
its metadata when the runner is constructed (a small zip read, no library loaded), so `input_spec`
is static and a wrong shape is refused before anything runs. `activate()` loads the compiled library
with `torch._inductor.aoti_load_package`, after checking that this machine can run it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..configs import get_config
from ..errors import BackendUnavailable
from ..export.aoti import (
    INPUT_NAME,
    AOTIPackageSpec,
    PackageError,
    package_unavailable_reason,
    read_package_metadata,
)
from .base import InputSpec, Runner


class AOTIRunner(Runner):
    """`AOTIRunner("tiny_64x96.pt2")`; device and precision come from the package.

    `device_index` picks the GPU for CUDA packages (default: the current device).
    """

    backend = "aoti"

    def __init__(self, package: str | os.PathLike, device_index: int | None = None):
        self.package = Path(package)
        self.metadata = read_package_metadata(self.package)
        self.spec = AOTIPackageSpec.from_metadata(self.metadata, str(self.package))
        device: str | torch.device = self.spec.device
        if self.spec.device == "cuda":
            device = torch.device("cuda", device_index if device_index is not None else 0)
        super().__init__(get_config(self.spec.backbone), self.spec.precision, device)
        self.model = None

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(INPUT_NAME, torch.float32, self.spec.input_shape)

    def _activate_impl(self) -> None:
        reason = package_unavailable_reason(self.metadata)
        if reason:
            raise BackendUnavailable(f"{self.package}: {reason}")
        index = self.device.index if self.device.type == "cuda" and self.device.index is not None else -1
        try:
            self.model = torch._inductor.aoti_load_package(str(self.package), device_index=index)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PackageError(f"{self.package}: cannot load the AOTInductor package: {first[:300]}") \
                from None

    def _deactivate_impl(self) -> None:
        self.model = None

    @torch.inference_mode()
    def _infer_impl(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device, non_blocking=True).contiguous())


def runner_for_encoder(encoder, *, precision: str = "fp16", size: tuple[int, int] = (384, 384), batch: int = 1,
                       device: str | torch.device = "cpu") -> AOTIRunner:
    """A runner over the cached AOTInductor package of `encoder` at (batch, *size), compiled on first use."""
    from ..export.aoti import cached_aoti_package

    device_type = torch.device(device).type
    return AOTIRunner(cached_aoti_package(encoder, size, batch, precision, device_type))
