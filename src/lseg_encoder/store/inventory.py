"""What is in the artefact cache, and clearing it (`lseg-encoder cache`).

With ViT-L/16 the cache reaches about 5 GB (a 1.7 GB synthetic checkpoint, fp32 and fp16 ONNX
files, engines) without saying so; this lists each kind with sizes and frees it. Clearing never
touches anything outside the cache root (a kind folder that is a symlink elsewhere), never removes
lock files (another process may hold one) and never removes the temp file of a writer that is still
running. Everything cleared is rebuilt when needed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LsegError
from .cache import cache_root

# kind -> what its folder `<root>/<kind>` holds (`build --engine-cache DIR` engines elsewhere are not listed)
KINDS = {
    "synthetic": "synthetic checkpoints",
    "onnx": "ONNX files",
    "engines": "TensorRT engines",
    "aoti": "AOTInductor packages",
    "vocab": "vocabulary embeddings",
}


def kind_folder(kind: str) -> Path:
    if kind not in KINDS:
        raise LsegError(f"unknown cache kind {kind!r}; choose from {', '.join(KINDS)}")
    return cache_root() / kind


@dataclass
class CachedItem:
    """One artefact with its companions (`.key.json`, engine sidecar, ONNX external data)."""

    path: Path
    nbytes: int
    companions: list[Path] = field(default_factory=list)
    state: str = ""  # "", "stale temp" (writer gone) or "being written"


@dataclass
class CacheKind:
    kind: str
    folder: Path
    items: list[CachedItem]
    inside_root: bool

    @property
    def nbytes(self) -> int:
        return sum(item.nbytes for item in self.items)


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
        return path.lstat().st_size
    except OSError:
        return 0


def _items(folder: Path) -> list[CachedItem]:
    from .atomic import TEMP_MARK, is_stale_temp

    try:
        paths = sorted((p for p in folder.iterdir() if not p.name.endswith(".lock")), key=lambda p: p.name)
    except OSError:  # missing folder: nothing cached yet
        return []
    items: dict[str, CachedItem] = {}
    for path in paths:  # sorted: an artefact comes before `<its name>.<more>`
        owner = next((name for name in items if path.name.startswith(name + ".")), None)
        if owner is not None and TEMP_MARK not in path.name:
            items[owner].companions.append(path)
            items[owner].nbytes += _size(path)
            continue
        state = ""
        if TEMP_MARK in path.name:
            state = "stale temp" if is_stale_temp(path) else "being written"
        items[path.name] = CachedItem(path, _size(path), state=state)
    return list(items.values())


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def cache_inventory(kinds: list[str] | None = None) -> list[CacheKind]:
    root = cache_root()
    out = []
    for kind in kinds or list(KINDS):
        folder = kind_folder(kind)
        inside = _inside(folder, root)
        out.append(CacheKind(kind, folder if inside else folder.resolve(), _items(folder), inside))
    return out


def clear_cache(kind: str | None = None) -> tuple[list[CachedItem], list[CacheKind]]:
    """Remove the artefacts of `kind` (all kinds when None); returns (removed, folders refused).

    A kind folder that resolves outside the cache root (a symlink) is refused: named explicitly it
    is an error, in a clear-all it is skipped and returned.
    """
    removed, refused = [], []
    for entry in cache_inventory([kind] if kind else None):
        if not entry.inside_root:
            if kind:
                raise LsegError(f"not clearing {entry.folder}: it is outside the cache root {cache_root()} "
                                "(remove it yourself if you mean it)")
            if entry.items:
                refused.append(entry)
            continue
        for item in entry.items:
            if item.state == "being written":
                continue
            for path in (item.path, *item.companions):
                if not _inside(path.parent, entry.folder):
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            removed.append(item)
    return removed, refused
