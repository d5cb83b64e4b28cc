"""TensorRT / TensorRT-RTX engines: backend probing, build options, the build itself, the content-
hashed cache and the sidecar that guards loading. TensorRT is imported lazily by these functions."""

from .backend import FLAVOURS, TrtBackend, backend_available, cuda_available, load_backend
from .build import EngineArtifact, build_engine, read_onnx_info, resolve_options
from .cache import EngineCache, cache_key, engine_cache_dir
from .options import BuildOptions, Profile, ShapeSpec, default_engine_name, parse_bytes, parse_shape
from .sidecar import EngineMetadata, sidecar_path, verify_engine

__all__ = [
    "FLAVOURS", "BuildOptions", "EngineArtifact", "EngineCache", "EngineMetadata", "Profile", "ShapeSpec",
    "TrtBackend", "backend_available", "build_engine", "cache_key", "cuda_available", "default_engine_name",
    "engine_cache_dir", "load_backend", "parse_bytes", "parse_shape", "read_onnx_info", "resolve_options",
    "sidecar_path", "verify_engine",
]
