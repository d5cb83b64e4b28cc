"""Verify results as files: `report.md`, `report.json` (stamped) and `segmentation.png`."""

from __future__ import annotations

from pathlib import Path

from ..sizes import size_name
from ..suites.verify import SEGMENT_LABELS, VerifyResult
from .compare import markdown_table
from .figures import render_side_by_side
from .writer import write_json, write_text

SEGMENTATION_PNG = "segmentation.png"
SYNTHETIC_BANNER = ("> **SYNTHETIC WEIGHTS** - this report uses deterministic synthetic weights (no `--weights` "
                    "given, or a synthetic checkpoint): it proves the backends agree with PyTorch, not that the "
                    "segmentation is meaningful.")


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
    inspected = [a["inspect"] for a in result.artefacts if "inspect" in a]
    if inspected:
        from ..fidelity.polygraphy_inspect import inspect_markdown

        md += ["## What Polygraphy sees in each artefact", ""]
        md += [inspect_markdown(s) if "kind" in s else f"- `{s['path']}`: {s['reason']}"
               for s in inspected] + [""]
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
    if result.segmentations:
        md += [f"Labels: {', '.join(SEGMENT_LABELS)}; one panel per backend that ran.", "",
               f"![segmentation]({SEGMENTATION_PNG})"]
    else:
        md += ["No segmentation (no text tower or no backend ran)."]
    return "\n".join(md) + "\n"


def write_verify_report(result: VerifyResult, out: str | Path) -> dict[str, Path]:
    """`report.md`, `report.json` and (when a segmentation ran) `segmentation.png` under `out`."""
    from ..preprocess import load_image, sample_image_path

    out = Path(out)
    paths = {}
    if result.segmentations:
        size = result.sizes[0]
        title = (f"labels: {', '.join(SEGMENT_LABELS)}  |  {result.backbone} at {size_name(size)}"
                 + ("  |  SYNTHETIC WEIGHTS" if result.synthetic else ""))
        paths["png"] = render_side_by_side(load_image(sample_image_path()), result.segmentations,
                                           out / SEGMENTATION_PNG, title=title)
    data = {**result.to_dict(), "segmentation_png": SEGMENTATION_PNG if result.segmentations else None}
    paths["markdown"] = write_text(out / "report.md", render_markdown(result))
    paths["json"] = write_json(out / "report.json", "verify", data, machine=result.machine)
    return paths
