"""TensorRT / TensorRT-RTX engines: backend probing, build options, the plan, the build itself and the
sidecar that guards loading. Engines live in the one artefact cache (`store.cache`), checked against
their sidecar before reuse. TensorRT is imported lazily by these functions."""

from .backend import FLAVOURS, TrtBackend, backend_available, cuda_available, load_backend
from .build import EngineArtifact, build_engine
from .options import BuildOptions, Profile, ShapeSpec, default_engine_name, parse_bytes, parse_shape
from .plan import cache_key, read_onnx_info, resolve_options
from .sidecar import EngineMetadata, sidecar_path, verify_engine

__all__ = [
    "FLAVOURS", "BuildOptions", "EngineArtifact", "EngineMetadata", "Profile", "ShapeSpec",
    "TrtBackend", "backend_available", "build_engine", "cache_key", "cuda_available", "default_engine_name",
    "load_backend", "parse_bytes", "parse_shape", "read_onnx_info", "resolve_options",
    "sidecar_path", "verify_engine",
]
