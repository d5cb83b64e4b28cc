"""Pure fidelity metrics over two feature maps, and verdicts that explain themselves.

`feature_metrics(candidate, reference)` returns a `FeatureMetrics` (global cosine in float64
clamped to [-1, 1], relative L2, max-abs, and the per-pixel cosine distribution). `check(metrics,
precision)` returns a `Verdict` that is truthy when every metric is within `tolerances.TOLERANCES`,
and whose text names each failing metric with the tolerance that would have passed, so that
`assert check(...)` reads naturally and fails informatively (after Polygraphy's comparators).
Polygraphy's own comparator works on named numpy outputs of its runners; our runners return torch
tensors and we need per-pixel cosines and label agreement, which it does not compute, so these are
our own small functions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .tolerances import Tolerance, tolerance_for

# The fixed prompt set of the label-agreement metric (tests, `compare`, `verify` use the same).
FIDELITY_PROMPTS = ("dog", "grass", "sky", "building", "person", "car", "tree", "water", "road", "other")


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    return t.detach().to("cpu", torch.float64)


@dataclass
class FeatureMetrics:
    cosine: float
    rel_l2: float
    max_abs: float
    pixel_cos_min: float
    pixel_cos_p01: float
    pixel_cos_p1: float
    pixel_cos_mean: float
    shape: tuple[int, ...]
    label_agreement: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        txt = (f"cos={self.cosine:.7f} relL2={self.rel_l2:.2e} maxabs={self.max_abs:.2e} "
               f"pixcos[min={self.pixel_cos_min:.6f} p0.1={self.pixel_cos_p01:.6f} mean={self.pixel_cos_mean:.7f}]")
        if self.label_agreement is not None:
            txt += f" labels={self.label_agreement:.4f}"
        return txt


def pixel_cosine(candidate, reference) -> torch.Tensor:
    """Per-pixel cosine over the channel axis (B, C, h, w) -> (B, h, w), float64."""
    a, b = _as_tensor(candidate), _as_tensor(reference)
    num = (a * b).sum(dim=1)
    den = a.norm(dim=1) * b.norm(dim=1)
    return (num / den.clamp_min(1e-300)).clamp(-1.0, 1.0)


def label_agreement(candidate, reference, text_features) -> float:
    """Fraction of pixels whose argmax over the prompts (text_features (N, C)) agrees."""
    t = _as_tensor(text_features)
    la = torch.einsum("bchw,nc->bnhw", _as_tensor(candidate), t).argmax(dim=1)
    lb = torch.einsum("bchw,nc->bnhw", _as_tensor(reference), t).argmax(dim=1)
    return float((la == lb).double().mean())


def feature_metrics(candidate, reference, text_features=None) -> FeatureMetrics:
    a, b = _as_tensor(candidate), _as_tensor(reference)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: candidate {tuple(a.shape)} vs reference {tuple(b.shape)}")
    diff = a - b
    cos = float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()).clamp_min(1e-300))
    pc = pixel_cosine(a, b).flatten()
    q = torch.quantile(pc, torch.tensor([0.001, 0.01], dtype=torch.float64)) if pc.numel() < 16_000_000 \
        else torch.from_numpy(np.quantile(pc.numpy(), [0.001, 0.01]))
    return FeatureMetrics(
        cosine=min(1.0, max(-1.0, cos)),
        rel_l2=float(diff.norm() / b.norm().clamp_min(1e-300)),
        max_abs=float(diff.abs().max()),
        pixel_cos_min=float(pc.min()),
        pixel_cos_p01=float(q[0]),
        pixel_cos_p1=float(q[1]),
        pixel_cos_mean=float(pc.mean()),
        shape=tuple(a.shape),
        label_agreement=None if text_features is None else label_agreement(a, b, text_features),
    )


@dataclass
class Verdict:
    """Truthy when all checks pass; `str()` lists each failure with the tolerance that would pass."""

    precision: str
    metrics: FeatureMetrics
    failures: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        head = f"[{self.precision}] {self.metrics}"
        return head if self else head + "\n  FAILED: " + "; ".join(self.failures)

    __repr__ = __str__

    def to_dict(self) -> dict:
        return {"precision": self.precision, "passed": bool(self), "failures": self.failures,
                "metrics": self.metrics.to_dict()}


def check(metrics: FeatureMetrics, precision: str, *, baseline: FeatureMetrics | None = None,
          tolerance: Tolerance | None = None) -> Verdict:
    """Judge `metrics` (candidate vs fp32 reference) against the table for `precision`.

    `baseline`: metrics of PyTorch in the same precision vs the same fp32 reference; when given and
    the precision has `k_vs_baseline`, the candidate's error must be within k times the baseline's.
    """
    tol = tolerance or tolerance_for(precision)
    failures = []

    def at_least(name: str, value: float | None, limit: float | None) -> None:
        if limit is not None and value is not None and not value >= limit:
            failures.append(f"{name} {value:.7f} < {limit} (would pass with {name} >= {value:.7f})")

    def at_most(name: str, value: float | None, limit: float | None) -> None:
        if limit is not None and value is not None and not value <= limit:
            failures.append(f"{name} {value:.3e} > {limit:.1e} (would pass with {name} <= {value:.3e})")

    at_most("max_abs", metrics.max_abs, tol.max_abs)
    at_most("rel_l2", metrics.rel_l2, tol.rel_l2)
    at_least("cosine", metrics.cosine, tol.cosine)
    at_least("pixel_cos_min", metrics.pixel_cos_min, tol.pixel_cos_min)
    at_least("pixel_cos_p01", metrics.pixel_cos_p01, tol.pixel_cos_p01)
    at_least("label_agreement", metrics.label_agreement, tol.label_agreement)
    if baseline is not None and tol.k_vs_baseline is not None:
        # floor the baseline error so a baseline that happens to be exact does not demand perfection
        limit = tol.k_vs_baseline * max(baseline.rel_l2, 1e-4)
        at_most("rel_l2_vs_baseline", metrics.rel_l2, limit)
    return Verdict(precision, metrics, failures)


def metrics_to_json(results: dict) -> str:
    return json.dumps(results, indent=2, sort_keys=True, default=str)
