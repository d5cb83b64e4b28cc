"""What to extract: expand image files, folders, globs, `@list.txt` and videos into items with stable ids.

An item's id names its output file, so it must not depend on the machine, the order of arguments or
how many workers run: a folder's images get their path relative to the folder (without extension),
a video's frames `<video stem>/<frame index>`. Items are sorted by id, so "the first N" and `--shard`
mean the same thing on every run.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import LsegError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


class InputError(LsegError):
    """An input argument that names nothing usable (a missing path, an empty glob, clashing ids)."""


@dataclass(frozen=True)
class Item:
    """One unit of work: an image file, or one frame of a video (`frame` is its decode index).

    `error` is set for items that failed while listing (a video that cannot be opened or has no
    frames); they are recorded as failed without being scheduled.
    """

    id: str
    source: str
    frame: int | None = None
    error: str | None = None

    @property
    def is_video_frame(self) -> bool:
        return self.frame is not None


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of a video become items: every `every`-th, or about `fps` per second."""

    every: int | None = None
    fps: float | None = None

    def __post_init__(self):
        if self.every is not None and self.fps is not None:
            raise InputError("give --every or --fps, not both")
        if self.every is not None and self.every < 1:
            raise InputError(f"--every must be >= 1, got {self.every}")
        if self.fps is not None and not self.fps > 0:
            raise InputError(f"--fps must be > 0, got {self.fps}")


def _has_magic(text: str) -> bool:
    return glob.has_magic(text)


def _id_for(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if root in path.parents or path == root else Path(path.name)
    return rel.with_suffix("").as_posix()


def _walk(folder: Path) -> list[Path]:
    """Image and video files under `folder`, recursively, hidden names skipped (sorted later)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            suffix = Path(name).suffix.lower()
            if not name.startswith(".") and (suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES):
                found.append(Path(dirpath) / name)
    return found


def _glob_root(pattern: str) -> Path:
    """The folder before the first wildcard: ids of glob matches are relative to it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _expand_one(arg: str) -> list[tuple[Path, Path]]:
    """One argument -> (file, root its id is relative to) pairs."""
    if arg.startswith("@"):
        listing = Path(arg[1:])
        try:
            lines = listing.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read list {listing}: {exc.strerror or exc}") from None
        base = listing.parent
        pairs = []
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                path = Path(line) if Path(line).is_absolute() else base / line
                pairs.append((path, base))  # a missing file is an item failure, recorded with its reason
        if not pairs:
            raise InputError(f"list {listing} names no files")
        return pairs
    if _has_magic(arg):
        matches = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
        if not matches:
            raise InputError(f"pattern {arg!r} matches no files")
        return [(p, _glob_root(arg)) for p in matches]
    path = Path(arg)
    if path.is_dir():
        files = _walk(path)
        if not files:
            raise InputError(f"folder {path} holds no image or video files")
        return [(p, path) for p in files]
    if not path.exists():
        raise InputError(f"input {arg!r} does not exist")
    return [(path, path.parent)]


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(inputs, sampling: VideoSampling | None = None, max_pixels: int | None = None) -> list[Item]:
    """All items of `inputs` (paths, folders, globs, '@list.txt'), sorted by id; clashing ids refused."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [str(i) for i in inputs]
    if not inputs:
        raise InputError("no inputs given")
    sampling = sampling or VideoSampling()
    items: dict[str, Item] = {}
    for arg in inputs:
        for path, root in _expand_one(arg):
            base_id = _id_for(Path(os.path.abspath(path)), Path(os.path.abspath(root)))
            if is_video(path):
                from .video import list_frames

                new = list_frames(path, base_id, sampling, max_pixels)
            else:
                new = [Item(base_id, str(path))]
            for item in new:
                other = items.get(item.id)
                if other is not None and other.source != item.source:
                    raise InputError(f"two inputs map to the same id {item.id!r}: {other.source} and {item.source}; "
                                     "rename one or pass their folders separately")
                items[item.id] = item
    return [items[k] for k in sorted(items)]


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    try:
        index, count = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise InputError(f"bad --shard {text!r}; use i/N with 0 <= i < N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"bad --shard {text!r}: need 0 <= i < N, e.g. 0/{max(count, 1)}")
    return index, count


def shard_of(item_id: str, count: int) -> int:
    """Deterministic shard of an id (sha1, not Python's salted hash): same split on every machine."""
    return int.from_bytes(hashlib.sha1(item_id.encode("utf-8")).digest()[:8], "big") % count


def select_shard(items: list[Item], shard: tuple[int, int] | None) -> list[Item]:
    """The items of shard (i, N); a video's frames stay together, so each video is decoded once."""
    if shard is None:
        return items
    index, count = shard
    return [it for it in items if shard_of(it.id.rsplit("/", 1)[0] if it.is_video_frame else it.id, count) == index]
