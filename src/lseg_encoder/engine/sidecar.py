"""The JSON sidecar written beside every engine, and the checks made before an engine is loaded.

A serialised TensorRT engine only runs with the exact TensorRT version that built it, on the GPUs
it was built for, and it silently encodes one ONNX graph. The sidecar records all of that (plus
options, profiles, I/O tensors, build host and time), and the engine's own sha256, so that a
tampered, stale or foreign engine is refused with a message that says why and how to rebuild,
instead of failing inside TensorRT or, worse, running the wrong model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import EngineError
from ..store.atomic import atomic_path
from ..store.fingerprint import sha256_file  # noqa: F401  (re-exported)

SCHEMA = "lseg-encoder.engine-sidecar"
SCHEMA_VERSION = 1


def sidecar_path(engine_path: str | Path) -> Path:
    """`x.trt` -> `x.trt.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class EngineMetadata:
    """Everything that determined an engine, and where and when it was built."""

    engine: dict  # file, sha256, bytes
    backend: dict  # flavour, version, typing ("strong"/"weak"), network_flags
    onnx: dict  # path, sha256, precision, backbone, metadata
    precision: str  # "fp32" / "fp16": the engine's compute precision as built
    options: dict  # BuildOptions.to_json()
    profiles: list  # [{"min": [B,H,W], "opt": ..., "max": ...}]
    io: list  # [{"name", "mode", "dtype", "shape"}] from the parsed network
    targets: dict  # compute_capabilities (list or None), source (str)
    build: dict  # host, platform, python, time_utc, seconds, phases
    sparsity: dict  # requested, report (str), layers_total, layers_sparse
    cache_key: str
    rebuild_command: str
    lseg_encoder_version: str
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    build_log: list = field(default_factory=list)  # the builder's INFO-level summary lines

    @property
    def is_static(self) -> bool:
        return len(self.profiles) == 1 and self.profiles[0]["min"] == self.profiles[0]["max"]

    @property
    def backbone(self) -> str | None:
        return self.onnx.get("backbone")

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return Path(path)

    def write_beside(self, engine: str | Path) -> Path:
        """The engine's sidecar; if it cannot be written the engine goes too (it could not be loaded)."""
        try:
            return self.write(sidecar_path(engine))
        except BaseException:
            Path(engine).unlink(missing_ok=True)
            raise

    @classmethod
    def read(cls, path: str | Path) -> EngineMetadata:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise EngineError(f"{path}: sidecar missing; an engine without its sidecar cannot be checked "
                              "against this runtime. Rebuild it with `lseg-encoder build`") from None
        except (OSError, ValueError) as exc:
            raise EngineError(f"{path}: unreadable sidecar ({exc}); rebuild the engine with "
                              "`lseg-encoder build`") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise EngineError(f"{path}: not an lseg-encoder engine sidecar (schema "
                              f"{data.get('schema') if isinstance(data, dict) else None!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise EngineError(f"{path}: sidecar schema version {data.get('schema_version')} is not "
                              f"{SCHEMA_VERSION}; rebuild the engine with this lseg-encoder: "
                              f"{data.get('rebuild_command', 'lseg-encoder build --onnx ...')}")
        known = set(cls.__dataclass_fields__)
        missing = [k for k in known if k not in data and cls.__dataclass_fields__[k].default is not None
                   and k not in ("schema", "schema_version", "build_log")]
        if missing:
            raise EngineError(f"{path}: sidecar lacks {', '.join(sorted(missing))}; rebuild the engine")
        return cls(**{k: v for k, v in data.items() if k in known})


def verify_engine(engine_path: str | Path, *, backend=None, onnx_path: str | Path | None = None,
                  compute_capability: str | None = None, engine_bytes: bytes | None = None) -> EngineMetadata:
    """Read the sidecar of `engine_path` and refuse an engine that does not match.

    Checks, each with its own message and the command that rebuilds the engine:
    the engine file's sha256 (tampered / replaced / truncated), the TensorRT flavour and version of
    `backend` (a TrtBackend), the ONNX sha256 when `onnx_path` is given (stale engine), and
    `compute_capability` ('8.9') against the recorded targets when those are known.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EngineError(f"{engine_path}: engine file not found")
    meta = EngineMetadata.read(sidecar_path(engine_path))
    rebuild = f"rebuild it: {meta.rebuild_command}"
    actual = sha256_bytes(engine_bytes) if engine_bytes is not None else sha256_file(engine_path)
    if actual != meta.engine["sha256"]:
        raise EngineError(
            f"{engine_path}: engine sha256 {actual[:16]}... does not match its sidecar "
            f"({meta.engine['sha256'][:16]}...): the file was modified, truncated or replaced after it "
            f"was built; refusing to load it. {rebuild}")
    if backend is not None:
        want = (meta.backend["flavour"], meta.backend["version"])
        have = (backend.flavour, backend.version)
        if want != have:
            raise EngineError(
                f"{engine_path}: built with {want[0]} {want[1]}, but the runtime is {have[0]} {have[1]}; "
                f"TensorRT engines only load in the exact version that built them. {rebuild}")
    if onnx_path is not None:
        onnx_sha = sha256_file(onnx_path)
        if onnx_sha != meta.onnx["sha256"]:
            raise EngineError(
                f"{engine_path}: built from an ONNX with sha256 {meta.onnx['sha256'][:16]}..., but "
                f"{onnx_path} now has {onnx_sha[:16]}...: the engine is stale. {rebuild}")
    targets = meta.targets.get("compute_capabilities")
    if compute_capability is not None and targets and compute_capability not in targets:
        raise EngineError(
            f"{engine_path}: built for compute capabilities {', '.join(targets)} "
            f"({meta.targets.get('source')}); this GPU has {compute_capability}. {rebuild}")
    return meta
