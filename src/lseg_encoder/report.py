"""Fidelity comparisons as reports: rows of (size, candidate vs reference) metrics, written as JSON, a
markdown table (like the seed's 8-a / 8-b) and a heat-map of the per-pixel cosine of the worst row.

Used by `lseg-encoder compare` and `lseg-encoder verify`; the metrics and verdicts themselves come
from `compare` and the one tolerance table, so a row here passes exactly when the fidelity tests would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import BackendUnavailable, LsegError
from .fidelity.metrics import FIDELITY_PROMPTS, FeatureMetrics, Verdict, check, feature_metrics, pixel_cosine
from .store.atomic import atomic_path, write_bytes_atomic

Say = Callable[[str], None]
REPORT_SCHEMA = "lseg-encoder/compare/v1"


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


# feature files ------------------------------------------------------------------------------------
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


# backends -----------------------------------------------------------------------------------------
def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def sample_input(config, size: tuple[int, int]) -> torch.Tensor:
    """The bundled sample image at `size`: real image statistics make label agreement meaningful."""
    from .preprocess import preprocess, sample_image_path

    return preprocess(sample_image_path(), size, config)


def prompt_features(checkpoint: str | Path, prompts: Sequence[str] = FIDELITY_PROMPTS) -> torch.Tensor | None:
    """Text features of the fixed prompt set from the checkpoint's CLIP text tower (None if it has none)."""
    from .text import load_text_encoder

    try:
        return load_text_encoder(checkpoint).encode_text(list(prompts))
    except LsegError:
        return None


def run_features(runner_factory: Callable[[tuple[int, int]], object], sizes, say: Say) -> dict:
    """{size: features} for one backend; raises BackendUnavailable with the runner's reason."""
    out = {}
    for size in sizes:
        runner = runner_factory(size)
        runner.activate()
        try:
            say(f"  {runner.name} at {size_name(size)}")
            out[size] = runner.infer(sample_input(runner.config, size))
        finally:
            runner.deactivate()
    return out


def compare_backends(encoder, backends: Sequence[str], sizes, *, device: str = "cpu", text_features=None,
                     say: Say = print) -> tuple[list[CompareRow], dict[str, str]]:
    """Every backend against the first (the reference) at every size; returns (rows, skipped{name: why}).

    Low-precision rows are also bounded relative to `torch-fp16` when that backend is in the list.
    """
    from .runners import BACKENDS, make_runner

    features, skipped = {}, {}
    for backend in backends:
        say(f"running {backend}")
        try:
            features[backend] = run_features(
                lambda size, b=backend: make_runner(b, encoder, device=device, size=size), sizes, say)
        except BackendUnavailable as exc:
            if backend == backends[0]:
                raise
            skipped[backend] = str(exc)
            say(f"  skipped: {exc}")
    reference = backends[0]
    rows = []
    for size in sizes:
        baseline = None
        if "torch-fp16" in features and reference != "torch-fp16":
            baseline = feature_metrics(features["torch-fp16"][size], features[reference][size])
        for backend in backends[1:]:
            if backend not in features:
                continue
            precision = BACKENDS[backend][0]
            rows.append(compare_features(
                features[backend][size], features[reference][size], precision=precision, size=size_name(size),
                candidate_name=backend, reference_name=reference, text_features=text_features,
                baseline=None if backend == "torch-fp16" else baseline))
    return rows, skipped


def compare_checkpoints(encoder_a, encoder_b, backend: str, sizes, *, device: str = "cpu", text_features=None,
                        names: tuple[str, str] = ("A", "B"), say: Say = print) -> list[CompareRow]:
    """Same backend, two checkpoints (seed's 8-b): metrics only, B is the reference."""
    from .runners import make_runner

    say(f"running {backend} on {names[0]}")
    fa = run_features(lambda size: make_runner(backend, encoder_a, device=device, size=size), sizes, say)
    say(f"running {backend} on {names[1]}")
    fb = run_features(lambda size: make_runner(backend, encoder_b, device=device, size=size), sizes, say)
    return [compare_features(fa[s], fb[s], precision=None, size=size_name(s), candidate_name=names[0],
                             reference_name=names[1], text_features=text_features) for s in sizes]


# output -------------------------------------------------------------------------------------------
def _verdict_cell(row: CompareRow) -> str:
    if row.verdict is None:
        return "-"
    if row.verdict:
        return "PASS"
    return "FAIL: " + ", ".join(f.split(" ", 1)[0] for f in row.verdict.failures)


def markdown_table(rows: Sequence[CompareRow]) -> str:
    """size x candidate: cosine, pixel cos p0.1 / min, rel L2, max-abs, label agreement, verdict."""
    head = ("| size | candidate | reference | precision | cosine | pixel cos p0.1 | pixel cos min | rel L2 "
            "| max-abs | label agreement | verdict |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        m = r.metrics
        labels = "-" if m.label_agreement is None else f"{m.label_agreement:.4f}"
        lines.append(f"| {r.size} | {r.candidate} | {r.reference} | {r.precision} | {m.cosine:.7f} "
                     f"| {m.pixel_cos_p01:.6f} | {m.pixel_cos_min:.6f} | {m.rel_l2:.2e} | {m.max_abs:.2e} "
                     f"| {labels} | {_verdict_cell(r)} |")
    return "\n".join(lines) + "\n"


def failure_lines(rows: Sequence[CompareRow]) -> list[str]:
    return [f"{r.size} {r.candidate} vs {r.reference}: {f}" for r in rows if r.verdict is not None
            for f in r.verdict.failures]


def worst_row(rows: Sequence[CompareRow]) -> CompareRow:
    return min(rows, key=lambda r: (r.metrics.pixel_cos_min, r.metrics.cosine))


def render_heatmap(row: CompareRow, output: str | Path, dpi: int = 100) -> Path:
    """PNG of 1 - per-pixel cosine (log colour scale, so fp32-level and fp16-level errors both show)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    err = np.clip(1.0 - row.pixel_cos.astype(np.float64), 1e-12, 2.0)
    lo, hi = float(err.min()), float(err.max())
    if hi <= lo * 1.0001:
        lo, hi = lo / 10, max(hi * 10, lo * 100)
    h, w = err.shape
    aspect = w / h
    fig = Figure(figsize=(min(12.0, 4.5 * aspect + 1.8), 5.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(err, cmap="magma", norm=LogNorm(vmin=lo, vmax=hi), interpolation="nearest")
    ax.set_xlabel(f"x (feature pixels, width {w})")
    ax.set_ylabel(f"y (height {h})")
    fig.colorbar(image, ax=ax, label="1 − per-pixel cosine (log; brighter = worse)", shrink=0.9)
    m = row.metrics
    fig.suptitle(f"per-pixel cosine, {row.candidate} vs {row.reference} at {row.size}\n"
                 f"min {m.pixel_cos_min:.6f}   p0.1 {m.pixel_cos_p01:.6f}   mean {m.pixel_cos_mean:.7f}   "
                 f"verdict {_verdict_cell(row)}", fontsize=9)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return output


def write_json(path: str | Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_compare_report(rows: Sequence[CompareRow], out: str | Path, *, meta: dict,
                         skipped: dict[str, str] | None = None, title: str = "lseg-encoder compare") -> dict:
    """`compare.json`, `compare.md` and `pixel_cosine_worst.png` under `out`; returns their paths."""
    out = Path(out)
    skipped = skipped or {}
    paths = {"json": out / "compare.json", "markdown": out / "compare.md"}
    if rows:
        paths["heatmap"] = render_heatmap(worst_row(rows), out / "pixel_cosine_worst.png")
    judged = [r for r in rows if r.verdict is not None]
    data = {"schema": REPORT_SCHEMA, **meta, "passed": all(r.passed for r in judged) if judged else None,
            "rows": [r.to_dict() for r in rows], "skipped": skipped,
            "heatmap": str(paths["heatmap"].name) if "heatmap" in paths else None}
    write_json(paths["json"], data)
    md = [f"# {title}", ""]
    md += [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    md += ["", markdown_table(rows)]
    if judged:
        fails = failure_lines(rows)
        md += ["**All verdicts pass.**" if not fails else "**Failures:**", ""] + [f"- {f}" for f in fails]
    else:
        md += ["Different checkpoints: metrics only, no pass/fail."]
    if skipped:
        md += ["", "## Skipped", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    if "heatmap" in paths:
        w = worst_row(rows)
        md += ["", f"![per-pixel cosine, worst: {w.candidate} at {w.size}]({paths['heatmap'].name})"]
    write_text(paths["markdown"], "\n".join(md) + "\n")
    return paths
