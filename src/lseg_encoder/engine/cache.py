"""Content-addressed engine cache: one key per everything that determines an engine.

The key is a sha256 over the ONNX bytes (by their sha256), the input shapes, every builder option,
the TensorRT flavour and exact version, and the target GPU compute capabilities. Two processes that
want the same engine wait on one file lock, and the engine and its sidecar are renamed into place
only when complete, so a crash or Ctrl-C never leaves a half-written engine under its key.

Location: `--engine-cache DIR`, else `$LSEG_ENGINE_CACHE`, else `cache_dir("engines")`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import EngineError
from .sidecar import EngineMetadata, sidecar_path, verify_engine

KEY_VERSION = 1


def engine_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        path = Path(explicit)
    elif os.environ.get("LSEG_ENGINE_CACHE"):
        path = Path(os.environ["LSEG_ENGINE_CACHE"])
    else:
        from ..store.cache import cache_dir

        return cache_dir("engines")
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(*, onnx_sha256: str, shapes: list, options: dict, flavour: str, version: str,
              targets: list | str | None, typing: str) -> str:
    """sha256 of a canonical JSON of everything that determines the engine bytes."""
    payload = {
        "key_version": KEY_VERSION, "onnx_sha256": onnx_sha256, "shapes": shapes, "options": options,
        "backend": {"flavour": flavour, "version": version, "typing": typing}, "targets": targets,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class EngineCache:
    """`<root>/<name-stem>.<key16>.trt` + `.trt.json`, guarded by `<root>/<key16>.lock`."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = engine_cache_dir(root)

    def engine_path(self, key: str, default_name: str) -> Path:
        stem = default_name.removesuffix(".trt")
        return self.root / f"{stem}.{key[:16]}.trt"

    @contextlib.contextmanager
    def locked(self, key: str, report: Callable[[str], None] = lambda m: None) -> Iterator[None]:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / f"{key[:16]}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            report(f"waiting for another process building the same engine (lock {lock.lock_file}) ...")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def lookup(self, key: str, default_name: str, backend, report: Callable[[str], None] = lambda m: None
               ) -> EngineMetadata | None:
        """The cached engine's metadata if present and intact; None (a miss) otherwise.

        A cached engine that fails verification (edited, truncated, sidecar missing) is reported and
        treated as a miss, so the caller rebuilds it in place.
        """
        path = self.engine_path(key, default_name)
        if not path.is_file():
            return None
        try:
            meta = verify_engine(path, backend=backend)
        except EngineError as exc:
            report(f"cached engine rejected, rebuilding: {exc}")
            return None
        if meta.cache_key != key:
            report(f"cached engine {path.name} has key {meta.cache_key[:16]}..., expected {key[:16]}...; "
                   "rebuilding")
            return None
        return meta

    def files(self, key: str, default_name: str) -> tuple[Path, Path]:
        path = self.engine_path(key, default_name)
        return path, sidecar_path(path)
