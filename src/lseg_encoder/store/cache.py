"""The one artefact cache: where cached things live, and how one is built exactly once.

Everything expensive that is derived from the weights (synthetic checkpoints, ONNX files, engines,
AOTInductor packages, vocabulary embeddings) lives under `cache_dir(kind)`. `LSEG_CACHE_DIR`
overrides the user cache folder, so CI and tests keep everything inside a throw-away folder.

`cached_artifact(kind, key, build)` returns `<cache>/<kind>/[<stem>]<sha256(key)[:16]><suffix>`, building
it with `build(tmp_path)` under a file lock and renaming it into place only when the build succeeds,
so concurrent test workers or CLI calls never see half-written files. The key is a JSON-able dict of
everything that changes the artefact (weights fingerprint, precision, shapes, library versions, ...);
it is stored beside the artefact as `<name>.key.json` for humans. An optional `verify(path)` hook
checks a cached file before it is handed out; when it raises, the file is rebuilt in place.
With ViT-L/16 the cache reaches about 5 GB; `store.inventory` (`lseg-encoder cache`) lists and clears it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import LsegError
from .atomic import atomic_path, write_bytes_atomic

CACHE_ENV = "LSEG_CACHE_DIR"


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lseg-encoder"))


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LsegError(f"cannot create the cache folder {path}: {exc.strerror or exc} "
                        f"(set {CACHE_ENV} to a writable folder)") from None
    return path


def artifact_key(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_artifact(kind: str, key: dict, build: Callable[[Path], object], suffix: str, *,
                    root: Path | None = None, stem: str = "", name: str | None = None,
                    verify: Callable[[Path], object] | None = None,
                    progress: Callable[[str], None] | None = None) -> Path:
    """The artefact for `key`, built once. `name` fixes the file name (the key is still recorded);
    otherwise it is `<stem><key hash><suffix>`. `progress` hears when another process holds the lock."""
    from filelock import FileLock, Timeout

    folder = Path(root) if root else cache_dir(kind)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{stem}{artifact_key(key)}{suffix}")
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            progress(f"waiting for another process building the same artefact (lock {lock.lock_file}) ...")
        lock.acquire()
    try:
        if path.exists() and verify is not None:
            try:
                verify(path)
            except Exception:  # a damaged or stale cache entry: rebuild it rather than fail
                path.unlink()
        if not path.exists():
            with atomic_path(path, suffix=".tmp" + suffix) as tmp:
                build(tmp)
            write_bytes_atomic(folder / f"{path.name}.key.json",
                               json.dumps(key, indent=1, sort_keys=True, default=str).encode())
    finally:
        lock.release()
    return path
