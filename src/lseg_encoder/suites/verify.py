"""`verify`: the whole promise in one run, composed of the other suites. It writes nothing itself;
`reports.verify` turns the result into `report.md`, `report.json` and `segmentation.png`.

1. export the ONNX graphs (fp32 and fp16, from the artefact cache, each once);
2. build TensorRT engines where a builder is importable (TensorRT-RTX builds on CPU); whether an
   engine can then *run* is the backend probe's decision, and its reason is reported;
3. run every requested backend on the bundled sample image at every size (the one sweep), against
   PyTorch fp32, judged by the one tolerance table, fp16 also relative to torch-fp16 when it ran;
4. time each backend that ran at the first size (device-only and end-to-end, each cell bounded by
   count and by time);
5. segment the sample image with each backend's features into a few labels.

With no backend list, every row of the backend table is reported: run, or skipped with its reason
(the ones that cost minutes on this device type are skipped unless named: `Backend.skipped_by_default`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackendUnavailable, LsegError
from ..sizes import Size, check_size, size_name
from .compare import CompareRow, rows_against_reference, sample_input
from .sweep import RunnerPool, Skip, default_backends, sweep
from .timing import machine_info, time_runner

Progress = Callable[[str], None]
DEFAULT_SIZES = ((384, 384),)
SEGMENT_LABELS = ("cat", "grass", "other")
TIMING_CELL_SECONDS = 5.0


@dataclass
class VerifyResult:
    weights: str
    backbone: str
    synthetic: bool
    device: str
    sizes: list[Size]
    backends: list[str]
    rows: list[CompareRow] = field(default_factory=list)
    latency: list[dict] = field(default_factory=list)
    artefacts: list[dict] = field(default_factory=list)  # ONNX exports, engine builds
    skipped: dict[str, str] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    segmentations: dict = field(default_factory=dict)  # backend -> segment.Segmentation
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.rows)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "synthetic_weights": self.synthetic, "weights": self.weights,
                "backbone": self.backbone, "device": self.device, "sizes": [size_name(s) for s in self.sizes],
                "backends": self.backends, "fidelity": [r.to_dict() for r in self.rows], "latency": self.latency,
                "artefacts": self.artefacts, "skipped": self.skipped,
                "segmentation_fractions": {b: s.fractions for b, s in self.segmentations.items()},
                "seconds": round(self.seconds, 1)}


def _export_onnx(encoder, result: VerifyResult, say: Progress) -> None:
    from ..loaders import onnx_file

    for precision in ("fp32", "fp16"):
        t0 = time.perf_counter()
        say(f"[1/5] ONNX {precision} export (cached after the first run)")
        path = onnx_file(encoder, precision=precision)
        result.artefacts.append({"kind": "onnx", "precision": precision, "path": str(path),
                                 "seconds": round(time.perf_counter() - t0, 2)})


def _build_engines(encoder, result: VerifyResult, say: Progress) -> None:
    """Build the engines even where they cannot run: building is half of what TensorRT support means."""
    from ..backends import get_backend
    from ..engine.backend import backend_available
    from ..loaders import engine_file

    wanted = [b for b in result.backends if b.startswith("tensorrt")]
    ok, reason = backend_available() if wanted else (False, "")
    if wanted and not ok:
        say(f"[2/5] no TensorRT builder: {reason}")
        result.skipped.update({b: f"no engine built: {reason}" for b in wanted})
        return
    for backend in wanted:
        precision = get_backend(backend).precision
        for size in result.sizes:
            say(f"[2/5] TensorRT {precision} engine at {size_name(size)} (cached after the first build)")
            try:
                art = engine_file(encoder, precision=precision, shape=(1, *size))
            except LsegError as exc:
                result.skipped[backend] = f"engine build failed: {exc}"
                break
            result.artefacts.append({"kind": "engine", "backend": backend, "precision": precision,
                                     "size": size_name(size), "path": str(art.path), "cache_hit": art.cache_hit,
                                     "seconds": round(art.seconds, 2),
                                     "builder": f"{art.metadata.backend.get('flavour')} "
                                                f"{art.metadata.backend.get('version')}"})


def _inspect(result: VerifyResult, say: Progress) -> None:
    """What Polygraphy, an independent tool, reads in each artefact (I/O, dynamic axes, opset, layers,
    engine profiles): a second opinion on what was built, beside the project's own metadata."""
    from ..fidelity.polygraphy_inspect import inspect_summary

    for artefact in result.artefacts:
        try:
            artefact["inspect"] = inspect_summary(artefact["path"])
        except LsegError as exc:  # BackendUnavailable too: Polygraphy missing
            artefact["inspect"] = {"path": artefact["path"], "reason": str(exc)}
            say(f"  no Polygraphy inspection of {artefact['path']}: {exc}")


def _note_skip(result: VerifyResult, skip: Skip, say: Progress) -> None:
    reason = skip.reason
    if skip.backend in result.skipped:  # the engine-build note, then why it cannot run (each reason once)
        note = result.skipped[skip.backend]
        reason = note if reason in note else f"{note}; execution skipped: {reason}"
    elif any(a.get("backend") == skip.backend for a in result.artefacts):
        reason = f"engine built, execution skipped: {reason}"
    result.skipped[skip.backend] = reason
    say(f"  skipped {skip.backend}: {reason}")


def _segment(features: dict, text_encoder, result: VerifyResult, say: Progress) -> None:
    from ..preprocess import load_image, sample_image_path
    from ..segment import segment_features

    if not features or text_encoder is None:
        return
    say("[5/5] segmentation")
    size = result.sizes[0]
    pil = load_image(sample_image_path())
    text = text_encoder.encode_text(list(SEGMENT_LABELS))
    result.segmentations = {b: segment_features(f[size][:1], text, list(SEGMENT_LABELS), (pil.height, pil.width))
                            for b, f in features.items()}


def run_verify(encoder, *, weights: str | Path = "", sizes: Sequence[Size] = DEFAULT_SIZES, device: str = "cpu",
               backends: Sequence[str] | None = None, iterations: int | None = None,
               progress: Progress | None = None) -> VerifyResult:
    """Run the five steps for `encoder` (loaded from `weights`, which also holds the text tower)."""
    from ..backends import check_backends
    from ..fidelity.metrics import FIDELITY_PROMPTS
    from ..text import load_text_encoder

    say = progress or (lambda msg: None)
    start = time.perf_counter()
    explicit = backends is not None
    backends = check_backends(backends or default_backends(device))
    backends = ["torch"] + [b for b in backends if b != "torch"]  # the fp32 reference always runs first
    for size in sizes:
        check_size(encoder.config, *size)
    result = VerifyResult(str(weights), encoder.config.name, bool(getattr(encoder, "synthetic", False)),
                          str(device), [tuple(s) for s in sizes], backends, machine=machine_info())
    try:
        text_encoder = load_text_encoder(weights)
        prompts = text_encoder.encode_text(list(FIDELITY_PROMPTS))
    except LsegError as exc:
        text_encoder, prompts = None, None
        result.skipped["label agreement / segmentation"] = f"no text tower in the checkpoint: {exc}"
    cuda = str(device).startswith("cuda")
    n = iterations if iterations is not None else (50 if cuda else 3)
    timing = {"warmup": 10 if cuda else 1, "iterations": n, "max_seconds": TIMING_CELL_SECONDS}

    _export_onnx(encoder, result, say)
    _build_engines(encoder, result, say)
    _inspect(result, say)
    features: dict = {}

    def run(backend: str, size: Size, runner) -> None:
        x = sample_input(runner.config, size)
        say(f"[3/5] {backend} at {size_name(size)}")
        features.setdefault(backend, {})[size] = runner.infer(x)
        if size == result.sizes[0] and n > 0:
            for mode in ("device", "end-to-end"):
                say(f"[4/5] timing {backend} {mode} (at most {n} iterations or {TIMING_CELL_SECONDS:g} s)")
                result.latency.append({**time_runner(runner, x, mode=mode, **timing).to_dict(), "backend": backend})

    pool = RunnerPool(encoder, device, explicit=backends if explicit else ())
    sweep(pool, backends, result.sizes, run, on_skip=lambda skip: _note_skip(result, skip, say))
    if "torch" not in features:
        raise BackendUnavailable(f"the fp32 reference (torch) cannot run on {device}: {result.skipped.get('torch')}")
    result.rows = rows_against_reference(features, "torch", result.sizes, text_features=prompts)
    _segment(features, text_encoder, result, say)
    result.seconds = time.perf_counter() - start
    return result
