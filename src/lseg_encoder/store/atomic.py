"""Atomic file writes: every artefact is written to a temp file beside its target, then renamed.

A crash, a Ctrl-C or a failed validation never leaves a partial file under the final name, and
every failure to write or rename (a folder in the way, no permission, a full or read-only disk)
becomes one `WriteError` line that names the target, never a traceback or a bare "File exists".

Temp files are named `.<target name>.lseg-tmp-<pid>-<random><suffix>` (folders: `...<random>.d`),
and companions a writer puts beside its temp (ONNX external data) start with the temp's name. The
temp and its companions are removed on every exception path; a writer killed outright (`kill -9`,
power loss) leaves them behind, and the next write to the same target removes those whose writer
process is gone. The pid check is per host: a cache folder shared between machines over a network
file system should not be written from two hosts at once anyway (its file locks are host-local).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import WriteError

TEMP_MARK = ".lseg-tmp-"
MB = 1_000_000
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
# torch.save's zip writer reports a failed write as a RuntimeError without an errno.
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "file write failed", "unexpected pos")


# temp names and stale temps -----------------------------------------------------------------------
def temp_name(target: Path, suffix: str) -> str:
    """A hidden name that says what it is, whose it is (pid) and what it will become."""
    return f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _writer_pid(name: str) -> int | None:
    """The pid after the first temp mark (a temp of a temp carries its outer writer's pid first)."""
    _, mark, rest = name.partition(TEMP_MARK)
    pid, sep, _ = rest.partition("-")
    return int(pid) if mark and sep and pid.isdigit() else None


def temp_writer_pid(name: str, target_name: str) -> int | None:
    """The writer pid if `name` is a temp (or a temp's temp or companion) of `target_name`."""
    if name.startswith((f".{target_name}{TEMP_MARK}", f"..{target_name}{TEMP_MARK}")):
        return _writer_pid(name)
    return None


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it is someone else's
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """A temp file or folder (of any target) whose writer process is gone."""
    pid = _writer_pid(path.name) if path.name.startswith(".") else None
    return pid is not None and not pid_alive(pid)


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove temps of `target` (and their companions) left by writers that no longer run."""
    target = Path(target)
    return sweep_stale_temps(target.parent, {target.name})


def sweep_stale_temps(folder: str | os.PathLike, target_names: set[str]) -> list[Path]:
    """`remove_stale_temps` for many targets of one folder in one scan: a bulk writer (extract writes
    thousands of files into one folder) sweeps once, then writes with `atomic_path(..., sweep=False)`,
    instead of listing the folder again for every file."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or TEMP_MARK not in name:
            continue
        owners = {name[1:].partition(TEMP_MARK)[0], name[2:].partition(TEMP_MARK)[0]} & target_names
        pid = next((temp_writer_pid(name, owner) for owner in owners), None)
        if pid is not None and not pid_alive(pid):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _with_companions(tmp: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(tmp.parent) if e.name.startswith(tmp.name)]
    except OSError:
        return [tmp]


def _bytes_in(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_dir():
                total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            else:
                total += path.stat().st_size
    return total


# one clear line per failure -----------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path("/")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_ancestor(folder)).free
    except OSError:
        return None


def _mb(nbytes: int) -> str:
    return f"{nbytes / MB:.1f} MB" if nbytes < 10 * MB else f"{nbytes / MB:.0f} MB"


def disk_full_message(folder: Path, needed: int | None, at_least: bool = False, free: int | None = None) -> str:
    free = _free_bytes(folder) if free is None else free
    have = f"{_mb(free)} free" if free is not None else "free space unknown"
    if needed is None:
        return f"disk full ({have})"
    return f"disk full ({have}, {'more than ' if at_least else ''}{_mb(needed)} needed)"


def write_error(target: str | os.PathLike, exc: OSError, *, written: int | None = None,
                expected: int | None = None, free: int | None = None) -> WriteError:
    """The one-line `WriteError` for an OSError met while writing `target` (or renaming onto it)."""
    target = Path(target)
    code = exc.errno
    if code in _DISK_FULL:  # the need is the expected size, or more than what got written
        needed = max(expected or 0, written or 0) or None
        why = disk_full_message(target.parent, needed, not expected or (written or 0) >= expected, free)
    elif code in (errno.EACCES, errno.EPERM):
        why = f"permission denied (folder {target.parent})"
    elif code == errno.EROFS:
        why = f"read-only file system ({target.parent})"
    elif code == errno.EISDIR or target.is_dir():
        why = "it is a directory; give a file name"
    elif code in (errno.ENOTDIR, errno.EEXIST) or not _existing_ancestor(target.parent).is_dir():
        blocker = _existing_ancestor(target.parent)
        why = f"{blocker} is a file, not a folder" if not blocker.is_dir() else "something else is in the way"
    elif code == errno.ENAMETOOLONG:
        why = "file name too long"
    else:
        why = exc.strerror or str(exc)
        if exc.filename and ".lseg-tmp-" not in str(exc.filename) and Path(exc.filename) != target:
            why += f" ({exc.filename})"
    return WriteError(f"cannot write {target}: {why}", errno.ENOSPC if code in _DISK_FULL else code)


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError that reached the CLI without a writer turning it into a WriteError."""
    if exc.errno in _DISK_FULL:
        folder = Path(exc.filename).parent if exc.filename else Path.cwd()
        return f"{exc.filename or folder}: {disk_full_message(folder, None)}"
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def ensure_writable_parent(target: str | os.PathLike) -> None:
    """Fail before expensive work (an export, an engine build) if the output cannot be written."""
    target = Path(target)
    if target.is_dir():
        raise WriteError(f"cannot write {target}: it is a directory; give a file name")
    blocker = _existing_ancestor(target.parent)
    if not blocker.is_dir():
        raise WriteError(f"cannot write {target}: {blocker} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(target, exc) from None
    if not os.access(target.parent, os.W_OK):
        code = errno.EROFS if _read_only(target.parent) else errno.EACCES
        raise write_error(target, OSError(code, os.strerror(code))) from None


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# the writer ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None, *, expected_bytes: int | None = None,
                folder: bool = False, sweep: bool = True) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto `target` only if the block succeeds.

    `suffix` ends the temp name (default: the target's suffix + ".tmp"; writers that insist on an
    extension, like `np.save`, pass theirs). `expected_bytes`, when known, goes into the disk-full
    message. `folder=True` yields `<private temp folder>/<target name>`, for writers that make
    side files or name things after their output (AOTInductor packages). `sweep=False` skips the
    stale-temp scan of the folder, for bulk writers that ran `sweep_stale_temps` once beforehand.
    """
    target = Path(target)
    ensure_writable_parent(target)
    if sweep:
        remove_stale_temps(target)
    tmp = target.parent / temp_name(target, ".d" if folder else (suffix if suffix is not None else
                                                                  target.suffix + ".tmp"))
    path = tmp / target.name if folder else tmp
    try:
        if folder:
            tmp.mkdir()
        else:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # umask applies
        yield path
        os.replace(path, target)
    except BaseException as exc:
        parts = _with_companions(tmp)
        written = _bytes_in(parts)
        torch_failure = isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILURES)
        # Free space once the temp is gone. Measured before removing it: a failed writer that is still
        # referenced (torch's zip writer, held by the traceback) keeps its file open after the unlink.
        free = _free_bytes(target.parent)
        free = None if free is None else free + written
        converting = isinstance(exc, OSError) or torch_failure
        for part in parts:
            _remove(part)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise write_error(target, exc, written=written, expected=expected_bytes, free=free) from None
        if converting:  # no errno (numpy's tofile, torch's zip writer)
            code = errno.ENOSPC if free is not None and free - written < MB else errno.EIO
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise write_error(target, OSError(code, why), written=written, expected=expected_bytes,
                              free=free) from None
        raise
    if folder:
        _remove(tmp)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target, expected_bytes=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def save_npy_atomic(target: str | os.PathLike, array) -> Path:
    import numpy as np

    array = np.asanyarray(array)
    with atomic_path(target, suffix=".npy", expected_bytes=array.nbytes + 128) as tmp:
        np.save(tmp, array)
    return Path(target)
