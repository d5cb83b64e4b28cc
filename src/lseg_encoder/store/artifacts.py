"""Build-once artefact cache (ONNX files, engines, AOTI packages) keyed by what determines them.

`cached_artifact(kind, key, build)` returns `<cache>/<kind>/[<stem>]<sha256(key)[:16]><suffix>`, building it
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

from .atomic import atomic_path, write_bytes_atomic
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
                    root: Path | None = None, stem: str = "") -> Path:
    from filelock import FileLock

    folder = Path(root) if root else cache_dir(kind)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{artifact_key(key)}{suffix}"  # `stem`: a readable prefix, optional
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            with atomic_path(path, suffix=".tmp" + suffix) as tmp:
                build(tmp)
            write_bytes_atomic(folder / f"{path.name}.key.json",
                               json.dumps(key, indent=1, sort_keys=True, default=str).encode())
    return path


def tensors_fingerprint(state) -> str:
    """sha256 over names, dtypes, shapes and bytes of a mapping of tensors (any dtype, bf16 too).

    Identifies weights, not files: the same tensors saved as .ckpt or .safetensors give one key,
    and a change of a value or of its storage dtype gives a new one.
    """
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_fingerprint(module) -> str:
    """`tensors_fingerprint` of a module's state dict (keys ONNX files and AOTI packages)."""
    return tensors_fingerprint(module.state_dict())
