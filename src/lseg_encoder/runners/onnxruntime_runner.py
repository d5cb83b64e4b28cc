"""ONNX Runtime backend (CPU, CUDA or TensorRT execution providers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..configs import get_config
from ..errors import BackendUnavailable, ExportError
from .base import InputSpec, Runner

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file (graph only, no weights loaded); ExportError if unreadable."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("the onnx package is not installed: pip install 'lseg-encoder[onnx]'") from None
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ExportError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise ExportError(f"{path}: not a readable ONNX model (empty graph)")
    return {p.key: p.value for p in model.metadata_props}


def check_ours(path: str | Path, meta: dict[str, str]) -> None:
    from ..export.onnx import PRODUCER

    if meta.get("producer") != PRODUCER or "backbone" not in meta:
        raise ExportError(f"{path}: not an lseg-encoder ONNX export (no producer/backbone metadata); "
                          "re-export it with `lseg-encoder export`")


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, allow_foreign: bool = False):
        self.path = Path(path)
        self.meta = read_onnx_metadata(self.path)
        if not allow_foreign:
            check_ours(self.path, self.meta)
        config = get_config(self.meta.get("backbone", "clip_vitl16_384"))
        self.requested_providers = providers
        super().__init__(config, self.meta.get("precision", "fp32"), "cpu")
        self.session = None

    def _activate_impl(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed: pip install 'lseg-encoder[onnx]'") from None
        available = ort.get_available_providers()
        if self.requested_providers:
            missing = [p for p in self.requested_providers if p not in available]
            if missing:
                raise BackendUnavailable(f"ONNX Runtime providers {missing} not available here "
                                         f"(available: {available})")
            providers = list(self.requested_providers)
        else:
            providers = [p for p in PREFERRED_PROVIDERS if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise ExportError(f"{self.path}: ONNX Runtime cannot load it: {str(exc).splitlines()[0][:300]}") from None
        self.providers = self.session.get_providers()
        if self.providers[0] != "CPUExecutionProvider":
            self.device = torch.device("cuda")

    def _deactivate_impl(self) -> None:
        self.session = None

    @property
    def input_spec(self) -> InputSpec:
        if self.session is not None:
            shape = self.session.get_inputs()[0].shape
        else:
            import onnx

            dims = onnx.load(str(self.path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
            shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        fixed = tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
        return InputSpec("image", torch.float32, fixed)

    def _infer_impl(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"image": np.ascontiguousarray(x.detach().cpu().numpy())})[0]
        return torch.from_numpy(out)
