"""The one JSON writer: every result file carries its schema, the package version and the machine.

A JSON written here can be read back years later and still say what produced it and where; every
file is written atomically (temp file, then rename), so a crash never leaves half a report.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..errors import LsegError
from ..store.atomic import write_bytes_atomic

SCHEMA_VERSION = 1


def schema_name(kind: str) -> str:
    return f"lseg-encoder/{kind}/v{SCHEMA_VERSION}"


def stamped(kind: str, data: dict, machine: dict | None = None) -> dict:
    """`data` with `schema`, `lseg_encoder_version` and `machine` first (machine recorded now if not given)."""
    if machine is None:
        from ..suites.timing import machine_info

        machine = machine_info()
    rest = {k: v for k, v in data.items() if k not in ("schema", "lseg_encoder_version", "machine")}
    return {"schema": schema_name(kind), "lseg_encoder_version": __version__, "machine": machine, **rest}


def check_schema(data: dict, kind: str) -> dict:
    """`data` if it is a result of `kind` in this schema version; LsegError otherwise."""
    if data.get("schema") != schema_name(kind):
        raise LsegError(f"not an lseg-encoder {kind} result of schema {schema_name(kind)!r} "
                        f"(schema {data.get('schema')!r})")
    return data


def write_json(path: str | Path, kind: str, data: dict, machine: dict | None = None) -> Path:
    text = json.dumps(stamped(kind, data, machine), indent=2, default=str) + "\n"
    return write_bytes_atomic(path, text.encode())


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
