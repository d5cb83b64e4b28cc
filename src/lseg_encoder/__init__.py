"""lseg-encoder: the LSeg image encoder from official checkpoints to ONNX and TensorRT, proven
fast and faithful.

The public API is imported here by name, so readers and type checkers see it. Heavy optional
backends (onnx, onnxruntime, tensorrt) are imported by the functions that need them, never here.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .backends import BACKENDS, make_runner
from .configs import CONFIGS, EncoderConfig, get_config
from .engine.build import build_engine
from .errors import LsegError
from .export.onnx import export_onnx
from .loaders import aoti_package, engine_file, export_validated, onnx_file
from .model import LSegEncoder, build_encoder
from .preprocess import preprocess
from .sizes import check_size, parse_size
from .text.encoder import load_text_encoder
from .weights.checkpoint import load_encoder
from .weights.synthetic import default_synthetic_checkpoint, synthetic_checkpoint

__all__ = [
    "BACKENDS", "CONFIGS", "EncoderConfig", "LSegEncoder", "LsegError", "__version__", "aoti_package",
    "build_encoder", "build_engine", "check_size", "default_synthetic_checkpoint", "engine_file", "export_onnx",
    "export_validated", "get_config", "load_encoder", "load_text_encoder", "make_runner", "onnx_file", "parse_size",
    "preprocess", "synthetic_checkpoint",
]
