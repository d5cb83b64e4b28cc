"""AOTInductor backend: runs a `.pt2` package from `lseg_encoder.export.aoti.package_aoti`.

The package fixes the input shape, precision and device at packaging time; all three are read from
its metadata when the runner is constructed (a small zip read, no library loaded), so `input_spec`
is static and a wrong shape is refused before anything runs. `activate()` loads the compiled library
with `torch._inductor.aoti_load_package`, after checking that this machine can run it.

CUDA packages are first loaded once in a child process (`load_crash_reason`): on torch 2.11+cu130
on the H100, `aoti_load_package` of a CUDA package kills the Python process with SIGSEGV during the
load itself (docs/cpp.md, "Python AOTI on CUDA"), which no `except` can catch. The probe turns that
into one clear error and leaves the caller's process alive; `LSEG_AOTI_PROBE=0` skips it.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import torch

from ..configs import get_config
from ..errors import BackendUnavailable, first_sentences
from ..export.metadata import INPUT_NAME, AOTIPackageSpec, PackageError, read_package_metadata
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
        if self.spec.device == "cuda":
            crash = load_crash_reason(self.package, index)
            if crash:
                raise BackendUnavailable(f"{self.package}: {crash}")
        try:
            self.model = torch._inductor.aoti_load_package(str(self.package), device_index=index)
        except RuntimeError as exc:
            raise PackageError(f"{self.package}: cannot load the AOTInductor package: {first_sentences(exc)}") \
                from None

    def _deactivate_impl(self) -> None:
        self.model = None

    @torch.inference_mode()
    def _infer_impl(self, x: torch.Tensor) -> torch.Tensor:
        # in the dtype the package writes (lseg.dtype); `run_on_device` casts to what the caller asked for
        return self.model(x.to(self.device, non_blocking=True).contiguous())


def package_unavailable_reason(meta: dict[str, str]) -> str | None:
    """Why a package with this metadata cannot run on this machine, or None if it can."""
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


_PROBE = "import sys, torch; torch._inductor.aoti_load_package(sys.argv[1], device_index=int(sys.argv[2]))"
_probed: dict[tuple[str, int, int], str | None] = {}


def load_crash_reason(package: Path, device_index: int, code: str = _PROBE, timeout: float = 600) -> str | None:
    """Load `package` in a child Python first; why it killed the child (a signal) or hung, else None.

    Memoised per file, modification time and device for this process. An ordinary load error
    (exit status > 0) is left to the in-process load, which reports it with its own message.
    """
    if os.environ.get("LSEG_AOTI_PROBE", "1") == "0":
        return None
    key = (str(Path(package).resolve()), Path(package).stat().st_mtime_ns, device_index)
    if key not in _probed:
        _probed[key] = _probe_in_child(package, device_index, code, timeout)
    return _probed[key]


def _probe_in_child(package: Path, device_index: int, code: str, timeout: float) -> str | None:
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(package), str(device_index)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"loading this CUDA package in a child process did not finish in {timeout:g} s"
    if proc.returncode >= 0:
        return None
    try:
        name = signal.Signals(-proc.returncode).name
    except ValueError:
        name = f"signal {-proc.returncode}"
    return (f"loading this CUDA package kills the Python process ({name}) on torch {torch.__version__}, "
            "a torch defect (docs/cpp.md, 'Python AOTI on CUDA'); run it with lseg_cpp, or use the "
            "compiled backend in Python")
