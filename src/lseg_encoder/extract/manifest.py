"""The out folder's memory: `run.json` (what configuration made these files) and `manifest.jsonl`
(one line per finished item), which together make reruns resume and refuse mixing configurations.

Why both: the manifest says an item finished; the file says it is still there and whole. An item is
done only when its latest manifest line is `ok` AND its file exists with the recorded size, so a
deleted or truncated file is redone. The manifest is append-only and flushed per line; a line cut by
`kill -9` is ignored on reading (its item is simply redone).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import LsegError
from ..store.atomic import write_bytes_atomic

MANIFEST = "manifest.jsonl"
RUN_JSON = "run.json"
SCHEMA_VERSION = 1


class ConfigMismatch(LsegError):
    """`--out` holds features made with another configuration."""


@dataclass
class Record:
    """One manifest line."""

    id: str
    source: str
    status: str  # "ok" | "failed"
    reason: str | None = None
    shape: list[int] | None = None
    dtype: str | None = None
    bytes: int | None = None
    seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def read_manifest(out: Path) -> dict[str, Record]:
    """Latest record per id; unparsable lines (a write cut by a crash) are skipped."""
    path = out / MANIFEST
    latest: dict[str, Record] = {}
    if not path.exists():
        return latest
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                data = json.loads(line)
                latest[data["id"]] = Record(**data)
            except (ValueError, KeyError, TypeError):
                continue
    return latest


def done_ids(out: Path, records: dict[str, Record], suffix: str) -> set[str]:
    """Ids whose latest record is ok and whose file is present with the recorded size."""
    done = set()
    for item_id, rec in records.items():
        if rec.status != "ok":
            continue
        try:
            if rec.bytes is None or os.path.getsize(out / (item_id + suffix)) == rec.bytes:
                done.add(item_id)
        except OSError:
            pass
    return done


class ManifestWriter:
    """Thread-safe appender (writer threads finish items); each line is flushed on its own."""

    def __init__(self, out: Path, fresh: bool = False):
        self.path = out / MANIFEST
        if fresh and self.path.exists():
            self.path.replace(out / f"{MANIFEST}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        self._file = open(self.path, "a", encoding="utf-8")
        if self._file.tell() > 0:
            self._terminate_cut_line()
        self._lock = threading.Lock()

    def _terminate_cut_line(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                self._file.write("\n")  # a line cut by a crash stays unparsable, on its own line

    def append(self, record: Record) -> None:
        with self._lock:
            self._file.write(record.to_json() + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two run configurations."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: {json.dumps(old.get(key))} there, {json.dumps(new.get(key))} now")
    return diffs


def check_config(out: Path, config: dict, overwrite: bool) -> bool:
    """True when `out` already holds a run of this configuration (resume); refuses another one.

    Returns False for a fresh folder or when `overwrite` replaces an earlier configuration.
    """
    path = out / RUN_JSON
    if not path.exists():
        return False
    try:
        old = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        if overwrite:
            return False
        raise ConfigMismatch(f"{path} is unreadable ({exc}); pass --overwrite to start a new run there") from None
    diffs = config_differences(old, config)
    if not diffs:
        return True
    if overwrite:
        return False
    raise ConfigMismatch(f"{out} holds features of another configuration ({'; '.join(diffs)}); "
                         "pass --overwrite to replace them, or choose another --out")


def write_run_json(out: Path, config: dict, extra: dict) -> None:
    body = {"schema_version": SCHEMA_VERSION, "config": config, **extra}
    write_bytes_atomic(out / RUN_JSON, (json.dumps(body, indent=1, sort_keys=True, default=str) + "\n").encode())
