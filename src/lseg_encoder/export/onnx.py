"""ONNX export of the LSeg encoder: fp32 or fp16 (strong-typing ready), static or dynamic shapes.

Exporter choice: `torch.onnx.export(..., dynamo=True)` (the torch.export-based exporter). It traces
the position-embedding resize symbolically, so one dynamic graph (batch, H, W) is correct at every
valid size; it emits real `LayerNormalization` ops at opset >= 17 and folds eval BatchNorm into the
convs. The legacy TorchScript exporter is deprecated and splits LayerNorm below opset 17. Works with
torch 2.11 (GPU machine) and 2.13 (CI).

fp16 graph: weights, convs and matmuls in fp16; LayerNorm (fp32 `LayerNormalization`), the
attention softmax and the final L2 normalisation in fp32 through explicit casts; I/O stays fp32.
That is what strongly typed TensorRT (11, RTX) builds as written.

The file is written to a temp path, checked by the caller's `validate` hook (ONNX Runtime against
PyTorch, from `loaders`), and only then renamed into place, so a failed export or validation leaves
nothing behind. This module is a pure exporter: it never imports a runner.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..configs import EncoderConfig
from ..errors import ExportError, first_sentences
from ..model import LSegEncoder
from ..model.fuse import LowPrecisionEncoder
from ..precisions import torch_dtype
from ..sizes import check_size, round_to_valid
from ..store.atomic import atomic_path, ensure_writable_parent
from .metadata import INPUT_NAME, OUTPUT_NAME, onnx_metadata

MIN_OPSET, MAX_OPSET = 17, 23
TWO_GB = 2**31


def prepare_for_export(encoder: LSegEncoder, precision: str) -> LowPrecisionEncoder:
    """fp32 I/O wrapper (a copy: the caller's module is left as it is); the attention softmax is
    spelled out so that its fp32 cast is in the graph."""
    return LowPrecisionEncoder(encoder, torch_dtype(precision), explicit_softmax=True).eval()


Validator = Callable[[Path, list[tuple[int, int]], int], list]  # (onnx file, sizes, batch) -> verdicts


@dataclass
class ExportResult:
    path: Path
    precision: str
    opset: int
    dynamic: bool
    size: tuple[int, int]
    batch: int
    seconds: float
    bytes: int
    checks: list  # compare.Verdict per validated size (empty when check=False)


def default_onnx_path(backbone: str, checkpoint: str | Path | None, precision: str = "fp32",
                      static: tuple[int, int, int] | None = None) -> Path:
    """`models/onnx_engines/lseg_img_enc_<backbone>_<ckpt-stem>[_fp16][_static<B>x<H>x<W>].onnx`."""
    stem = Path(checkpoint).stem if checkpoint else "synthetic"
    name = f"lseg_img_enc_{backbone}_{stem}"
    if precision != "fp32":
        name += f"_{precision}"
    if static:
        name += "_static" + "x".join(map(str, static))
    return Path("models") / "onnx_engines" / f"{name}.onnx"


def export_onnx(
    encoder: LSegEncoder, path: str | Path, *, precision: str = "fp32", opset: int = 18,
    dynamic: bool = True, batch: int = 1, size: tuple[int, int] = (384, 384),
    checkpoint_sha256: str | None = None, validate: Validator | None = None,
    check_sizes: list[tuple[int, int]] | None = None, progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export `encoder` to `path` (atomically).

    `validate(tmp_path, sizes, batch)` runs on the written file before it is renamed into place and
    raises to refuse it (`loaders.export_validated` passes an ONNX Runtime check); this module runs no
    backend itself. Default check sizes: the export size and a second, non-square one."""
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"unsupported precision {precision!r}; use fp32 or fp16")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"unsupported opset {opset}: need {MIN_OPSET}..{MAX_OPSET} "
                          "(>= 17 so that LayerNormalization is one op)")
    config = encoder.config
    size = (int(size[0]), int(size[1]))
    check_size(config, *size)
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: output must end in .onnx")
    ensure_writable_parent(path)
    log = progress or (lambda msg: None)

    wrapper = prepare_for_export(encoder, precision)
    # torch.export specialises a dimension whose example value is 1, so trace dynamic graphs at 2.
    example = torch.rand(max(batch, 2) if dynamic else batch, 3, *size) * 2 - 1
    dynamic_shapes = None
    if dynamic:
        dims = {0: torch.export.Dim("batch", min=1, max=256),
                2: torch.export.Dim("height", min=config.stride, max=4096),
                3: torch.export.Dim("width", min=config.stride, max=4096)}
        dynamic_shapes = {"image": dims}
    log(f"exporting {config.name} {precision} (opset {opset}, "
        f"{'dynamic' if dynamic else f'static {batch}x3x{size[0]}x{size[1]}'}) ...")
    start = time.perf_counter()
    try:
        import onnx  # noqa: F401  (fail early with a clear message)
    except ImportError:
        raise ExportError("ONNX export needs the `onnx` extra: pip install 'lseg-encoder[onnx]'") from None
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                wrapper, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                opset_version=opset, dynamic_shapes=dynamic_shapes, dynamo=True, verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; report one line
        raise ExportError(f"torch.onnx.export failed: {first_sentences(exc)}") from exc
    model_proto = program.model_proto
    meta = onnx_metadata(config, precision, opset, dynamic, size, batch, checkpoint_sha256,
                     getattr(encoder, "synthetic", False))
    del model_proto.metadata_props[:]
    for key, value in meta.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    nbytes = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    external = nbytes > TWO_GB - (64 << 20)
    checks = []
    with atomic_path(path, expected_bytes=nbytes) as tmp:
        _save(model_proto, tmp, path, external)
        _full_check(tmp)
        if validate is not None:
            sizes = check_sizes or ([size] if not dynamic else [size, _other_size(config, size)])
            checks = validate(tmp, sizes, batch if not dynamic else 1)
        if external:
            _move_external_data(tmp, path)
    seconds = time.perf_counter() - start
    nbytes_file = path.stat().st_size + (Path(str(path) + ".data").stat().st_size if external else 0)
    log(f"wrote {path} ({nbytes_file / 2**20:.1f} MiB) in {seconds:.1f} s")
    return ExportResult(path, precision, opset, dynamic, size, batch, seconds, nbytes_file, checks)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs torchvision-op registration notices and deprecation chatter that say
    nothing about this model; keep the user's terminal for our own progress lines."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _save(model_proto, tmp: Path, final: Path, external: bool) -> None:
    import onnx

    if external:  # > 2 GB protobuf limit: tensors go to <final>.data beside the graph
        # `<temp name>.data` is the temp's companion: removed with it on failure, and as stale after a kill
        onnx.save_model(model_proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=tmp.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model_proto, str(tmp))


def _move_external_data(tmp: Path, final: Path) -> None:
    import os

    import onnx

    model = onnx.load(str(tmp), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = final.name + ".data"
    onnx.save_model(model, str(tmp))
    os.replace(tmp.parent / (tmp.name + ".data"), final.parent / (final.name + ".data"))


def _full_check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None


def _other_size(config: EncoderConfig, size: tuple[int, int]) -> tuple[int, int]:
    """A second valid size, non-square and different from the export size."""
    h = round_to_valid(config, max(config.stride * 2, size[0] - 2 * config.stride * 2))
    w = round_to_valid(config, size[1] + 2 * config.stride)
    return h, w
