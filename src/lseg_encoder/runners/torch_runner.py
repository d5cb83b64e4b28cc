"""PyTorch eager backends: the fp32 reference and fp16 autocast."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from ..errors import BackendUnavailable, LsegError
from ..model import LSegEncoder
from ..model.fuse import placed
from ..precisions import TORCH_DTYPES
from .base import Runner

PRECISIONS = tuple(TORCH_DTYPES)  # fp32, fp16, bf16
_AUTOCAST = {name: TORCH_DTYPES[name] for name in ("fp16", "bf16")}


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off inside the block, the caller's settings restored after it.

    The fp32 reference must be fp32: cuDNN convs default to TF32 on Ampere and later, which alone
    moves the features by ~1e-3. Scoped, so that no other code in the process is affected.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def require_device(device: torch.device) -> None:
    from ..engine.backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason(device)
    if reason:
        raise BackendUnavailable(reason)


class TorchRunner(Runner):
    """Eager PyTorch. `encoder` is a module or a zero-argument loader (called on activate).

    fp16/bf16 use autocast, which keeps LayerNorm, softmax and the final normalisation in fp32 and
    runs matmuls/convs in the low precision: the same islands the fp16 ONNX graph carries.
    """

    backend = "torch"

    def __init__(self, encoder: LSegEncoder | Callable[[], LSegEncoder], precision: str = "fp32",
                 device: str | torch.device = "cpu", config=None):
        if precision not in PRECISIONS:
            raise LsegError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
        self._encoder_or_loader = encoder
        cfg = encoder.config if isinstance(encoder, LSegEncoder) else config
        if cfg is None:
            raise LsegError("TorchRunner needs `config=` when given a loader instead of a module")
        super().__init__(cfg, precision, device)
        self.model: LSegEncoder | None = None

    def _activate_impl(self) -> None:
        require_device(self.device)
        model = self._encoder_or_loader
        if not isinstance(model, LSegEncoder):
            model = model()
        self.model = placed(model, self.device, torch.float32)  # a copy when it must move

    def _deactivate_impl(self) -> None:
        self.model = None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp32":
            with strict_fp32():
                return self.model(x)
        with torch.autocast(self.device.type, dtype=_AUTOCAST[self.precision]):
            return self.model(x).float()

    @torch.inference_mode()
    def _infer_impl(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x.to(self.device, non_blocking=True))
