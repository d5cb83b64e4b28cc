"""Build-once artefact cache (ONNX files, engines, AOTI packages) keyed by what determines them.

`cached_artifact(kind, key, build)` returns `<cache>/<kind>/<sha256(key)[:16]><suffix>`, building it
with `build(tmp_path)` under a file lock and renaming it into place only when the build succeeds,
so concurrent test workers or CLI calls never see half-written files. The key is a JSON-able dict
of everything that changes the artefact (weights hash, precision, shapes, library versions, ...);
it is stored beside the artefact as `<name>.key.json` for humans.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from .atomic import atomic_path
from .cache import cache_dir


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 4 MiB chunks (checkpoints, ONNX files and engines are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_key(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_artifact(kind: str, key: dict, build: Callable[[Path], object], suffix: str,
                    root: Path | None = None) -> Path:
    from filelock import FileLock

    folder = Path(root) if root else cache_dir(kind)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{artifact_key(key)}{suffix}"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            with atomic_path(path, suffix=".tmp" + suffix) as tmp:
                build(tmp)
            (folder / f"{path.name}.key.json").write_text(json.dumps(key, indent=1, sort_keys=True, default=str))
    return path


def weights_fingerprint(encoder) -> str:
    """sha256 over the module's tensors (names, shapes, bytes): identifies the weights, not the file."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
