"""`lseg-encoder verify`: the whole promise in one run, written to `report.md` + `report.json`.

1. export the ONNX graphs (fp32 and fp16, from the artefact cache);
2. build TensorRT engines where a builder is importable (TensorRT-RTX builds on CPU); whether the
   engine can then *run* is the runner's decision, and its reason is reported;
3. run every requested backend on the bundled sample image at every size, against PyTorch fp32,
   judged by the one tolerance table (`tolerances.py`), fp16 also relative to torch-fp16 when it ran;
4. time each backend that ran (device-only and end-to-end, `bench.time_runner`);
5. segment the sample image with each backend's features into a few labels, side by side in one PNG.

Defaults keep `verify` without arguments (synthetic ViT-L/16) within a few minutes on two CPU cores:
one size (384) and no torch-fp16 on CPU (no fast fp16 CPU kernels: minutes per ViT-L forward).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BackendUnavailable, LsegError
from .report import CompareRow, compare_features, markdown_table, sample_input, size_name

Say = Callable[[str], None]
SCHEMA = "lseg-encoder/verify/v1"
DEFAULT_SIZES = ((384, 384),)
CPU_BACKENDS = ("torch", "onnxruntime", "onnxruntime-fp16", "tensorrt")
CUDA_BACKENDS = ("torch", "torch-fp16", "compiled", "onnxruntime", "onnxruntime-fp16", "tensorrt")
SEGMENT_LABELS = ("cat", "grass", "other")
SYNTHETIC_BANNER = ("> **SYNTHETIC WEIGHTS** - this report uses deterministic synthetic weights (no `--weights` "
                    "given, or a synthetic checkpoint): it proves the backends agree with PyTorch, not that the "
                    "segmentation is meaningful.")


def default_backends(device: str) -> tuple[str, ...]:
    return CUDA_BACKENDS if str(device).startswith("cuda") else CPU_BACKENDS


@dataclass
class VerifyResult:
    weights: str
    backbone: str
    synthetic: bool
    device: str
    sizes: list[tuple[int, int]]
    backends: list[str]
    rows: list[CompareRow] = field(default_factory=list)
    latency: list[dict] = field(default_factory=list)
    artefacts: list[dict] = field(default_factory=list)  # ONNX exports, engine builds
    skipped: dict[str, str] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    segmentation_png: str | None = None
    segmentation: dict = field(default_factory=dict)  # backend -> label fractions
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.rows)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "passed": self.passed, "synthetic_weights": self.synthetic,
                "weights": self.weights, "backbone": self.backbone, "device": self.device,
                "sizes": [size_name(s) for s in self.sizes], "backends": self.backends,
                "fidelity": [r.to_dict() for r in self.rows], "latency": self.latency,
                "artefacts": self.artefacts, "skipped": self.skipped, "machine": self.machine,
                "segmentation_png": self.segmentation_png, "segmentation_fractions": self.segmentation,
                "seconds": round(self.seconds, 1)}


def _export_onnx(encoder, result: VerifyResult, say: Say) -> None:
    from .export.onnx import cached_onnx

    for precision in ("fp32", "fp16"):
        t0 = time.perf_counter()
        say(f"[1/5] ONNX {precision} export (cached after the first run)")
        path = cached_onnx(encoder, precision=precision, dynamic=True)
        result.artefacts.append({"kind": "onnx", "precision": precision, "path": str(path),
                                 "seconds": round(time.perf_counter() - t0, 2)})


def _build_engines(encoder, backends: Sequence[str], result: VerifyResult, say: Say) -> None:
    from .engine.backend import backend_available
    from .engine.build import build_engine
    from .engine.options import ShapeSpec
    from .export.onnx import cached_onnx

    wanted = [b for b in backends if b.startswith("tensorrt")]
    if not wanted:
        return
    ok, reason = backend_available()
    if not ok:
        say(f"[2/5] no TensorRT builder: {reason}")
        for b in wanted:
            result.skipped[b] = f"no engine built: {reason}"
        return
    for backend in wanted:
        precision = "fp32" if backend == "tensorrt-fp32" else "fp16"
        for size in result.sizes:
            say(f"[2/5] TensorRT {precision} engine at {size_name(size)} (cached after the first build)")
            try:
                art = build_engine(cached_onnx(encoder, precision=precision, dynamic=True),
                                   ShapeSpec.static(1, *size))
            except LsegError as exc:
                result.skipped[backend] = f"engine build failed: {exc}"
                break
            result.artefacts.append({"kind": "engine", "backend": backend, "precision": precision,
                                     "size": size_name(size), "path": str(art.path), "cache_hit": art.cache_hit,
                                     "seconds": round(art.seconds, 2),
                                     "builder": f"{art.metadata.backend.get('flavour')} "
                                                f"{art.metadata.backend.get('version')}"})


def _run_backend(encoder, backend: str, result: VerifyResult, timing: dict, say: Say) -> dict:
    """{size: features} of one backend; times it at the first size. Raises BackendUnavailable."""
    from .runners import make_runner
    from .suites.timing import time_runner

    features = {}
    for i, size in enumerate(result.sizes):
        runner = make_runner(backend, encoder, device=result.device, size=size)
        runner.activate()
        try:
            x = sample_input(runner.config, size)
            say(f"[3/5] {backend} at {size_name(size)}")
            features[size] = runner.infer(x)
            if i == 0 and timing["iterations"] > 0:
                for mode in ("device", "end-to-end"):
                    say(f"[4/5] timing {backend} {mode} ({timing['iterations']} iterations)")
                    stats = time_runner(runner, x, mode=mode, **timing)
                    result.latency.append({**stats.to_dict(), "backend": backend})
        finally:
            runner.deactivate()
    return features


def _segmentation_png(features: dict, text_encoder, result: VerifyResult, out: Path, say: Say) -> None:
    from .preprocess import load_image, sample_image_path
    from .segment import segment_features

    if not features or text_encoder is None:
        return
    say("[5/5] segmentation PNG")
    size = result.sizes[0]
    pil = load_image(sample_image_path())
    text = text_encoder.encode_text(list(SEGMENT_LABELS))
    segs = {b: segment_features(f[size][:1], text, list(SEGMENT_LABELS), (pil.height, pil.width))
            for b, f in features.items()}
    result.segmentation = {b: s.fractions for b, s in segs.items()}
    path = render_side_by_side(pil, segs, out / "segmentation.png",
                               title=f"labels: {', '.join(SEGMENT_LABELS)}  |  {result.backbone} at "
                                     f"{size_name(size)}" + ("  |  SYNTHETIC WEIGHTS" if result.synthetic else ""))
    result.segmentation_png = path.name


def render_side_by_side(pil, segmentations: dict, output: Path, *, title: str, dpi: int = 100) -> Path:
    """Input image, then one overlay per backend, one shared legend (colours by the first backend's areas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from .render import legend_entries
    from .store.atomic import atomic_path

    first = next(iter(segmentations.values()))
    entries, colours = legend_entries(first.labels, first.fractions)
    entries = [(label, rgb) for (_, rgb), label in zip(entries, sorted(
        first.labels, key=lambda lab: -first.fractions.get(lab, 0.0)))]
    n = len(segmentations) + 1
    aspect = pil.width / pil.height
    panel = 3.2
    fig = Figure(figsize=(n * panel * aspect + 1.8, panel + 0.9), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n)
    image = np.asarray(pil)
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=10)
    for ax, (backend, seg) in zip(axes[1:], segmentations.items()):
        ax.imshow(image)
        ax.imshow(colours[seg.label_map], alpha=0.7, interpolation="nearest")
        shares = ", ".join(f"{lab} {100 * seg.fractions[lab]:.0f}%" for lab in seg.labels)
        ax.set_title(f"{backend}\n{shares}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    handles = [Patch(facecolor=rgb, edgecolor="black", linewidth=0.5, label=text) for text, rgb in entries]
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=10)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return output


def run_verify(weights: str | Path, *, backbone: str | None = None, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
               device: str = "cpu", backends: Sequence[str] | None = None, out: str | Path = "reports/verify",
               iterations: int | None = None, say: Say = print) -> VerifyResult:
    """Run all five steps and write `report.md`, `report.json` and `segmentation.png` under `out`."""
    from .fidelity.metrics import FIDELITY_PROMPTS, feature_metrics
    from .runners import BACKENDS
    from .suites.timing import machine_info
    from .text import load_text_encoder
    from .weights.checkpoint import load_encoder

    start = time.perf_counter()
    out = Path(out)
    backends = list(backends or default_backends(device))
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise LsegError(f"unknown backend {unknown[0]!r}; known: {', '.join(BACKENDS)}")
    if "torch" in backends:
        backends.remove("torch")
    backends.insert(0, "torch")  # the fp32 reference always runs first
    say(f"loading {weights}")
    encoder = load_encoder(weights, backbone=backbone)
    synthetic = bool(getattr(encoder, "synthetic", False))
    for size in sizes:
        from .sizes import check_size

        check_size(encoder.config, *size)
    result = VerifyResult(str(weights), encoder.config.name, synthetic, str(device), [tuple(s) for s in sizes],
                          backends, machine=machine_info())
    for key in ("gpu", "driver", "cuda", "onnxruntime", "tensorrt", "tensorrt_rtx"):
        result.machine.setdefault(key, None)  # every report names them, "none" where absent
    try:
        text_encoder = load_text_encoder(weights)
        prompts = text_encoder.encode_text(list(FIDELITY_PROMPTS))
    except LsegError as exc:
        text_encoder, prompts = None, None
        result.skipped["label agreement / segmentation"] = f"no text tower in the checkpoint: {exc}"
    cuda = str(device).startswith("cuda")
    n = iterations if iterations is not None else (50 if cuda else 3)
    timing = {"warmup": 10 if cuda else 1, "iterations": n}

    _export_onnx(encoder, result, say)
    _build_engines(encoder, backends, result, say)
    features = {}
    for backend in backends:
        try:
            features[backend] = _run_backend(encoder, backend, result, timing, say)
        except BackendUnavailable as exc:
            if backend == "torch":
                raise
            reason = str(exc)
            if backend in result.skipped:  # engine build note + why it cannot run
                reason = f"{result.skipped[backend]}; {reason}"
            elif any(a.get("backend") == backend for a in result.artefacts):
                reason = f"engine built, execution skipped: {reason}"
            result.skipped[backend] = reason
            say(f"  skipped {backend}: {reason}")

    for size in result.sizes:
        ref = features["torch"][size]
        baseline = feature_metrics(features["torch-fp16"][size], ref) if "torch-fp16" in features else None
        for backend in backends[1:]:
            if backend in features:
                result.rows.append(compare_features(
                    features[backend][size], ref, precision=BACKENDS[backend][0], size=size_name(size),
                    candidate_name=backend, reference_name="torch", text_features=prompts,
                    baseline=None if backend == "torch-fp16" else baseline))
    _segmentation_png(features, text_encoder, result, out, say)
    result.seconds = time.perf_counter() - start
    write_verify_report(result, out)
    return result


def _latency_table(latency: list[dict]) -> str:
    lines = ["| backend | precision | size | mode | median ms | mean ± std ms | min ms | iterations | timer |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in latency:
        lines.append(f"| {s['backend']} | {s['precision']} | {s['height']}x{s['width']} | {s['mode']} "
                     f"| {s['median_ms']:.1f} | {s['mean_ms']:.1f} ± {s['std_ms']:.1f} | {s['min_ms']:.1f} "
                     f"| {s['iterations']} (+{s['warmup']} warm-up) | {s['timer']} |")
    return "\n".join(lines) + "\n"


def render_markdown(result: VerifyResult) -> str:
    md = ["# lseg-encoder verify", ""]
    if result.synthetic:
        md += [SYNTHETIC_BANNER, ""]
    verdict = "PASS" if result.passed else "FAIL"
    md += [f"**Verdict: {verdict}** - {sum(r.passed is True for r in result.rows)}/{len(result.rows)} fidelity "
           f"checks pass against PyTorch fp32 (tolerances: `lseg_encoder/tolerances.py`).", "",
           f"- weights: `{result.weights}`" + (" (synthetic)" if result.synthetic else ""),
           f"- backbone: {result.backbone}", f"- device: {result.device}",
           f"- sizes: {', '.join(size_name(s) for s in result.sizes)}",
           f"- backends requested: {', '.join(result.backends)}", f"- wall time: {result.seconds:.0f} s", "",
           "## Fidelity (candidate vs torch fp32, sample image)", ""]
    md += [markdown_table(result.rows) if result.rows else "No backend besides the reference ran.\n"]
    fails = [f"- {r.size} {r.candidate}: {f}" for r in result.rows if r.verdict is not None
             for f in r.verdict.failures]
    if fails:
        md += ["**Failures:**", ""] + fails + [""]
    md += ["## Latency", "", "Device-only: input already on the device; end-to-end: host tensor in, host features "
           "out. CPU runs use few iterations: indicative only.", ""]
    md += [_latency_table(result.latency) if result.latency else "No timings.\n"]
    md += ["## Artefacts", ""]
    for a in result.artefacts:
        extra = f" at {a['size']}, builder {a['builder']}, cache hit: {a['cache_hit']}" if a["kind"] == "engine" else ""
        md.append(f"- {a['kind']} {a['precision']}{extra}: `{a['path']}` ({a['seconds']} s)")
    md += ["", "## Skipped", ""]
    md += [f"- **{k}**: {v}" for k, v in result.skipped.items()] or ["Nothing was skipped."]
    md += ["", "## Machine", "", "| key | value |", "|---|---|"]
    keys = ("date", "cpu", "cpu_count", "gpu", "gpu_capability", "driver", "cuda", "python", "torch",
            "onnxruntime", "tensorrt", "tensorrt_rtx")
    md += [f"| {k} | {result.machine.get(k) if result.machine.get(k) is not None else 'none'} |" for k in keys]
    md += ["", "## Segmentation", ""]
    if result.segmentation_png:
        md += [f"Labels: {', '.join(SEGMENT_LABELS)}; one panel per backend that ran.", "",
               f"![segmentation]({result.segmentation_png})"]
    else:
        md += ["No segmentation (no text tower or no backend ran)."]
    return "\n".join(md) + "\n"


def write_verify_report(result: VerifyResult, out: str | Path) -> tuple[Path, Path]:
    from .report import write_json, write_text

    out = Path(out)
    return (write_text(out / "report.md", render_markdown(result)),
            write_json(out / "report.json", result.to_dict()))


__all__ = ["CPU_BACKENDS", "CUDA_BACKENDS", "DEFAULT_SIZES", "SEGMENT_LABELS", "VerifyResult", "default_backends",
           "render_markdown", "run_verify"]
