"""The metadata every artefact of this project carries, written and read only here.

ONNX files carry `metadata_props` (producer, backbone, precision, export size, normalisation ...) and
AOTInductor packages carry `lseg.*` strings. Runners read them to know the backbone, precision and
input shape without the checkpoint; the exporters write them. Keeping both directions in one module
means a field cannot be written under one name and read under another.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..configs import EncoderConfig
from ..errors import BackendUnavailable, ExportError, LsegError

PRODUCER = "lseg-encoder"
INPUT_NAME, OUTPUT_NAME = "image", "features"
AOTI_METADATA_SCHEMA = "1"


# -- ONNX ------------------------------------------------------------------------------------------
def onnx_metadata(config: EncoderConfig, precision: str, opset: int, dynamic: bool, size, batch,
              checkpoint_sha256: str | None, synthetic: bool) -> dict[str, str]:
    mean, std = config.mean_std
    return {
        "producer": PRODUCER,
        "lseg_encoder_version": __version__,
        "backbone": config.name,
        "checkpoint_sha256": checkpoint_sha256 or "unknown",
        "synthetic_weights": str(bool(synthetic)).lower(),
        "precision": precision,
        "opset": str(opset),
        "dynamic": str(dynamic).lower(),
        "export_size": f"{size[0]}x{size[1]}",
        "export_batch": str(batch),
        "input_normalisation": f"(rgb/255 - mean) / std, mean={list(mean)}, std={list(std)}",
        "output": "L2-normalised features (B, 512, h, w), float32",
        "output_stride": "2 (features at H/2 x W/2 of the patch-aligned input)",
        "valid_sizes": config.size_rule(),
        "torch_version": torch.__version__,
    }


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file (graph only, no weights loaded); ExportError if unreadable."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("the onnx package is not installed: pip install 'lseg-encoder[onnx]'") from None
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ExportError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise ExportError(f"{path}: not a readable ONNX model (empty graph)")
    return {p.key: p.value for p in model.metadata_props}


def check_ours(path: str | Path, meta: dict[str, str]) -> None:
    if meta.get("producer") != PRODUCER or "backbone" not in meta:
        raise ExportError(f"{path}: not an lseg-encoder ONNX export (no producer/backbone metadata); "
                          "re-export it with `lseg-encoder export`")



# -- AOTInductor packages --------------------------------------------------------------------------
class PackageError(LsegError):
    """An AOTInductor package is missing, corrupt, foreign, or does not fit the request."""


OUTPUT_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class AOTIPackageSpec:
    """What a package computes; stored as `lseg.*` strings in the package metadata."""

    backbone: str
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    precision: str
    device: str
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # image normalisation, for callers that decode
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)   # images themselves (lseg_cpp extract --input X.jpg)
    synthetic: bool = False
    output_dtype: str = "float32"  # "float16": the package writes fp16 features (no cast after it)

    def to_metadata(self) -> dict[str, str]:
        return {
            "lseg.schema": AOTI_METADATA_SCHEMA,
            "lseg.backbone": self.backbone,
            "lseg.input_name": INPUT_NAME,
            "lseg.input_shape": ",".join(map(str, self.input_shape)),
            "lseg.output_shape": ",".join(map(str, self.output_shape)),
            "lseg.dtype": self.output_dtype,
            "lseg.precision": self.precision,
            "lseg.device": self.device,
            "lseg.mean": ",".join(map(repr, self.mean)),
            "lseg.std": ",".join(map(repr, self.std)),
            "lseg.synthetic": "1" if self.synthetic else "0",
            "lseg.torch_version": torch.__version__,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "package") -> AOTIPackageSpec:
        if "lseg.schema" not in meta:
            raise PackageError(f"{source}: an AOTInductor package without lseg metadata (not written by "
                               "`lseg-encoder package-aoti`)")
        if meta["lseg.schema"] != AOTI_METADATA_SCHEMA:
            raise PackageError(f"{source}: lseg metadata schema {meta['lseg.schema']!r}, this version reads "
                               f"{AOTI_METADATA_SCHEMA!r}; re-package it")
        try:
            return cls(
                backbone=meta["lseg.backbone"],
                input_shape=_parse_shape(meta["lseg.input_shape"]),
                output_shape=_parse_shape(meta["lseg.output_shape"]),
                precision=meta["lseg.precision"],
                device=meta["lseg.device"],
                mean=tuple(float(v) for v in meta["lseg.mean"].split(",")),
                std=tuple(float(v) for v in meta["lseg.std"].split(",")),
                synthetic=meta.get("lseg.synthetic") == "1",
                output_dtype=_output_dtype(meta.get("lseg.dtype", "float32")),
            )
        except (KeyError, ValueError) as exc:
            raise PackageError(f"{source}: malformed lseg metadata ({exc})") from None

    @property
    def size(self) -> tuple[int, int]:
        return self.input_shape[2], self.input_shape[3]


def _output_dtype(text: str) -> str:
    if text not in OUTPUT_DTYPES:
        raise ValueError(f"output dtype {text!r} is not one of {', '.join(OUTPUT_DTYPES)}")
    return text


def _parse_shape(text: str) -> tuple[int, int, int, int]:
    dims = tuple(int(d) for d in text.split(","))
    if len(dims) != 4:
        raise ValueError(f"shape {text!r} is not 4-D")
    return dims  # type: ignore[return-value]


def read_package_metadata(path: str | os.PathLike, model_name: str = "model") -> dict[str, str]:
    """The metadata strings of a `.pt2` package, read from the archive without loading its library."""
    import json

    path = Path(path)
    if not path.exists():
        raise PackageError(f"{path}: package file not found")
    if path.is_dir():
        raise PackageError(f"{path}: is a directory, expected a .pt2 package file")
    try:
        with zipfile.ZipFile(path) as archive:
            marker = f"data/aotinductor/{model_name}/"
            names = [n for n in archive.namelist() if marker in n and n.endswith("wrapper_metadata.json")]
            if not names:
                raise PackageError(f"{path}: a zip archive without an AOTInductor model {model_name!r} "
                                   "(not an AOTInductor .pt2 package)")
            return json.loads(archive.read(names[0]))
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"{path}: not an AOTInductor .pt2 package (not a readable zip archive: {exc})") \
            from None
    except ValueError as exc:
        raise PackageError(f"{path}: corrupt package metadata ({exc})") from None


def read_package_spec(path: str | os.PathLike) -> AOTIPackageSpec:
    return AOTIPackageSpec.from_metadata(read_package_metadata(path), str(path))
