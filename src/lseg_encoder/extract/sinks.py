"""Where features go: one file per item (`.npy` or `.safetensors`) mirroring the ids, or nowhere.

Each file is written to `.<name>.lseg-tmp-<pid>-<random>.part` beside its target and renamed into place, so a
`kill -9` leaves either the whole file or a `.part` that the next run removes (only `.part` files
named after its own targets). Writes run on a small thread pool, so the GPU does not wait on disk;
the number of writes in flight is bounded, which bounds host memory.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import LsegError, WriteError
from ..store.atomic import atomic_path, sweep_stale_temps

FORMATS = {"npy": ".npy", "safetensors": ".safetensors"}
TENSOR_KEY = "features"
PART_SUFFIX = ".part"


class DiskFullError(LsegError):
    """The output disk is full: the run stops; completed items stay, a rerun resumes."""


def feature_path(out: Path, item_id: str, fmt: str) -> Path:
    return out / (item_id + FORMATS[fmt])


def write_features(target: Path, array: np.ndarray, fmt: str) -> int:
    """Atomically write one feature map; returns the file size."""
    try:
        with atomic_path(target, suffix=PART_SUFFIX, sweep=False) as tmp:  # swept once per run
            if fmt == "npy":
                with open(tmp, "wb") as f:
                    np.save(f, array)
            else:
                from safetensors.numpy import save_file

                save_file({TENSOR_KEY: np.ascontiguousarray(array)}, str(tmp))
    except WriteError as exc:  # the atomic writer's one line (disk full says MB free and needed)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"{exc}; completed items are intact, "
                                "free space and rerun the same command to resume") from None
        raise
    except OSError as exc:
        raise LsegError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target.stat().st_size


def load_features(path: str | os.PathLike) -> np.ndarray:
    """A stored feature map (npy or safetensors) as a numpy array."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))[TENSOR_KEY]
    return np.load(path)


def sweep_stale_parts(targets: list[Path]) -> int:
    """Remove the temps that interrupted writes to these targets left behind (writers that no longer
    run only: another shard writing into the same --out keeps its own), one folder scan each; the
    writes then skip the per-file scan (`write_features`)."""
    by_dir: dict[Path, set[str]] = {}
    for t in targets:
        by_dir.setdefault(t.parent, set()).add(t.name)
    return sum(len(sweep_stale_temps(folder, names)) for folder, names in by_dir.items())


class BackgroundWriter:
    """Writes on `threads` threads with at most `max_pending` writes queued; errors surface on the
    caller's thread at the next `submit` or at `close` (a full disk stops the run, it is not an item
    failure)."""

    def __init__(self, fmt: str, threads: int = 2, max_pending: int = 8, enabled: bool = True):
        if fmt not in FORMATS:
            raise LsegError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.enabled = enabled
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lseg-write")
        self.slots = threading.Semaphore(max_pending)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.bytes = 0
        self._lock = threading.Lock()

    def submit(self, target: Path, array: np.ndarray, done: Callable[[int, float], None]) -> None:
        """Queue one write; `done(bytes, seconds)` runs on the writer thread after the rename."""
        self.raise_if_failed()
        if not self.enabled:
            done(0, 0.0)
            return
        self.slots.acquire()
        future: Future = self.pool.submit(self._write, target, array, done)
        future.add_done_callback(lambda _f: self.slots.release())

    def _write(self, target: Path, array: np.ndarray, done) -> None:
        if self.error is not None:
            return
        try:
            t0 = time.perf_counter()
            size = write_features(target, array, self.fmt)
            seconds = time.perf_counter() - t0
            with self._lock:
                self.seconds += seconds
                self.bytes += size
            done(size, seconds)
        except BaseException as exc:  # surfaced on the main thread
            self.error = exc

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        self.pool.shutdown(wait=True)
        self.raise_if_failed()
