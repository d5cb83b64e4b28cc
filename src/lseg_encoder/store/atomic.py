"""Atomic file writes: every artefact is written to a temp file beside its target, then renamed.

A crash, a Ctrl-C or a failed validation never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import LsegError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix + ".tmp",
            dir=target.parent,
        )
    except OSError as exc:
        raise LsegError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; artefacts get normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def ensure_writable_parent(target: str | os.PathLike) -> None:
    """Fail before expensive work (an export, an engine build) if the output cannot be written."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LsegError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not os.access(target.parent, os.W_OK):
        raise LsegError(f"cannot write {target}: directory {target.parent} is not writable")


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def save_npy_atomic(target: str | os.PathLike, array) -> Path:
    import numpy as np

    with atomic_path(target, suffix=".npy") as tmp:
        np.save(tmp, array)
    return Path(target)
