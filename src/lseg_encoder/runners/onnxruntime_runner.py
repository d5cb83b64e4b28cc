"""ONNX Runtime backend (CPU, CUDA or TensorRT execution providers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..configs import get_config
from ..errors import BackendUnavailable, ExportError, first_sentences
from ..export.metadata import check_ours, read_onnx_metadata
from .base import InputSpec, Runner

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


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
            raise ExportError(f"{self.path}: ONNX Runtime cannot load it: {first_sentences(exc)}") from None
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
