"""Fidelity comparisons as data: rows of (size, candidate vs reference) metrics and verdicts.

Used by `lseg-encoder compare` and `verify`; the metrics and verdicts come from `fidelity/` and the
one tolerance table, so a row passes exactly when the fidelity tests would. Nothing here writes a
file: `reports.compare` renders and writes the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..backends import get_backend
from ..errors import LsegError
from ..fidelity.metrics import FIDELITY_PROMPTS, FeatureMetrics, Verdict, check, feature_metrics, pixel_cosine
from ..sizes import Size, size_name
from .sweep import RunnerPool, Skip, sweep

Progress = Callable[[str], None]


@dataclass
class CompareRow:
    """One comparison; `verdict` is None in cross-checkpoint mode (different weights: no pass/fail)."""

    size: str  # "HxW" or the feature file's name
    candidate: str
    reference: str
    precision: str
    metrics: FeatureMetrics
    verdict: Verdict | None
    pixel_cos: np.ndarray = field(repr=False)  # (h, w) of the first batch item, for the heat-map

    @property
    def passed(self) -> bool | None:
        return None if self.verdict is None else bool(self.verdict)

    def to_dict(self) -> dict:
        return {"size": self.size, "candidate": self.candidate, "reference": self.reference,
                "precision": self.precision, "metrics": self.metrics.to_dict(), "passed": self.passed,
                "failures": [] if self.verdict is None else self.verdict.failures}


def compare_features(candidate, reference, *, precision: str | None, size: str, candidate_name: str,
                     reference_name: str, text_features=None, baseline: FeatureMetrics | None = None) -> CompareRow:
    """Metrics of `candidate` vs `reference` ((B, C, h, w)); judged against `precision`'s tolerances
    unless `precision` is None (cross-checkpoint)."""
    metrics = feature_metrics(candidate, reference, text_features)
    verdict = None if precision is None else check(metrics, precision, baseline=baseline)
    pc = pixel_cosine(candidate, reference)[0].numpy()
    return CompareRow(size, candidate_name, reference_name, precision or "-", metrics, verdict, pc)


def load_feature_file(path: str | Path) -> np.ndarray:
    """A `.npy` of (C, h, w) or (B, C, h, w) features -> float32 (B, C, h, w); LsegError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise LsegError(f"{path}: feature file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise LsegError(f"{path}: not a readable .npy file ({exc})") from None
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or not np.issubdtype(array.dtype, np.floating):
        raise LsegError(f"{path}: expected float features (C,h,w) or (B,C,h,w), got {array.dtype} {array.shape}")
    return array.astype(np.float32, copy=False)


def compare_files(candidate: str | Path, reference: str | Path, precision: str = "fp32",
                  text_features=None) -> CompareRow:
    a, b = load_feature_file(candidate), load_feature_file(reference)
    if a.shape != b.shape:
        raise LsegError(f"shape mismatch: {candidate} {a.shape} vs {reference} {b.shape} (reference)")
    if text_features is not None and text_features.shape[1] != a.shape[1]:
        text_features = None
    return compare_features(a, b, precision=precision, size=f"{a.shape[2]}x{a.shape[3]}",
                            candidate_name=Path(candidate).name, reference_name=Path(reference).name,
                            text_features=text_features)


def sample_input(config, size: Size) -> torch.Tensor:
    """The bundled sample image at `size`: real image statistics make label agreement meaningful."""
    from ..preprocess import preprocess, sample_image_path

    return preprocess(sample_image_path(), size, config)


def prompt_features(checkpoint: str | Path, prompts: Sequence[str] = FIDELITY_PROMPTS) -> torch.Tensor | None:
    """Text features of the fixed prompt set from the checkpoint's CLIP text tower (None if it has none)."""
    from ..text import load_text_encoder

    try:
        return load_text_encoder(checkpoint).encode_text(list(prompts))
    except LsegError:
        return None


def backend_features(pool: RunnerPool, backends: Sequence[str], sizes: Sequence[Size],
                     progress: Progress | None = None) -> tuple[dict, list[Skip]]:
    """{backend: {size: features of the sample image}} over the one sweep, plus its skips."""
    say = progress or (lambda msg: None)
    features: dict = {}

    def run(backend: str, size: Size, runner) -> None:
        say(f"  {backend} at {size_name(size)}")
        features.setdefault(backend, {})[size] = runner.infer(sample_input(runner.config, size))

    skips = sweep(pool, backends, sizes, run, on_skip=lambda s: say(f"  {s.line()}"))
    return features, skips


def rows_against_reference(features: dict, reference: str, sizes: Sequence[Size], *,
                           text_features=None) -> list[CompareRow]:
    """Every backend against `reference` at every size; low-precision rows also bounded relative to
    `torch-fp16` when that backend ran (`tolerances.Tolerance.k_vs_baseline`)."""
    rows = []
    for size in sizes:
        ref = features[reference][size]
        baseline = None
        if "torch-fp16" in features and reference != "torch-fp16":
            baseline = feature_metrics(features["torch-fp16"][size], ref)
        for backend, by_size in features.items():
            if backend == reference or size not in by_size:
                continue
            rows.append(compare_features(
                by_size[size], ref, precision=get_backend(backend).precision, size=size_name(size),
                candidate_name=backend, reference_name=reference, text_features=text_features,
                baseline=None if backend == "torch-fp16" else baseline))
    return rows


def compare_backends(encoder, backends: Sequence[str], sizes: Sequence[Size], *, device: str = "cpu",
                     text_features=None, progress: Progress | None = None) -> tuple[list[CompareRow], list[Skip]]:
    """Every backend against the first (the reference) at every size; returns (rows, skips)."""
    pool = RunnerPool(encoder, device, explicit=backends)
    features, skips = backend_features(pool, backends, sizes, progress)
    if backends[0] not in features:
        raise LsegError(f"the reference backend {backends[0]} could not run: "
                        + "; ".join(s.reason for s in skips if s.backend == backends[0]))
    return rows_against_reference(features, backends[0], sizes, text_features=text_features), skips


def compare_checkpoints(encoder_a, encoder_b, backend: str, sizes: Sequence[Size], *, device: str = "cpu",
                        text_features=None, names: tuple[str, str] = ("A", "B"),
                        progress: Progress | None = None) -> list[CompareRow]:
    """Same backend, two checkpoints: metrics only, B is the reference."""
    found = []
    for encoder in (encoder_a, encoder_b):
        features, skips = backend_features(RunnerPool(encoder, device, explicit=[backend]), [backend], sizes,
                                           progress)
        if backend not in features:
            raise LsegError(f"{backend} could not run: " + "; ".join(s.reason for s in skips))
        found.append(features[backend])
    return [compare_features(found[0][s], found[1][s], precision=None, size=size_name(s), candidate_name=names[0],
                             reference_name=names[1], text_features=text_features) for s in sizes]
