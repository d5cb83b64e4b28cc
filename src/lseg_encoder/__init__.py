"""lseg-encoder: the LSeg image encoder from official checkpoints to ONNX and TensorRT, proven
fast and faithful.

Heavy optional backends (onnx, onnxruntime, tensorrt) are imported lazily by the functions that
need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .configs import CONFIGS, EncoderConfig, get_config
from .errors import LsegError
from .model import LSegEncoder, build_encoder
from .sizes import check_size
from .weights.checkpoint import load_encoder
from .weights.synthetic import default_synthetic_checkpoint, synthetic_checkpoint

__all__ = [
    "CONFIGS", "EncoderConfig", "LSegEncoder", "LsegError", "__version__", "build_encoder", "check_size",
    "default_synthetic_checkpoint", "get_config", "load_encoder", "synthetic_checkpoint",
]


def __getattr__(name: str):
    # Lazily exposed API (keeps `import lseg_encoder` light and free of optional backends).
    lazy = {
        "preprocess": ("preprocess", "preprocess"),
        "export_onnx": ("export.onnx", "export_onnx"),
        "build_engine": ("engine.build", "build_engine"),
        "load_text_encoder": ("text.encoder", "load_text_encoder"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
