"""Compare results as files: `compare.json` (stamped with schema, version and machine), `compare.md`
(the size x candidate table) and `pixel_cosine_worst.png` (the heat-map of the worst row)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ..suites.compare import CompareRow
from ..suites.sweep import Skip
from .figures import render_heatmap, verdict_cell
from .writer import write_json, write_text


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
                     f"| {labels} | {verdict_cell(r)} |")
    return "\n".join(lines) + "\n"


def failure_lines(rows: Sequence[CompareRow]) -> list[str]:
    return [f"{r.size} {r.candidate} vs {r.reference}: {f}" for r in rows if r.verdict is not None
            for f in r.verdict.failures]


def worst_row(rows: Sequence[CompareRow]) -> CompareRow:
    return min(rows, key=lambda r: (r.metrics.pixel_cos_min, r.metrics.cosine))


def write_compare_report(rows: Sequence[CompareRow], out: str | Path, *, meta: dict,
                         skipped: Sequence[Skip] = (), title: str = "lseg-encoder compare") -> dict:
    """`compare.json`, `compare.md` and `pixel_cosine_worst.png` under `out`; returns their paths."""
    out = Path(out)
    paths = {"json": out / "compare.json", "markdown": out / "compare.md"}
    if rows:
        paths["heatmap"] = render_heatmap(worst_row(rows), out / "pixel_cosine_worst.png")
    judged = [r for r in rows if r.verdict is not None]
    data = {**meta, "passed": all(r.passed for r in judged) if judged else None,
            "rows": [r.to_dict() for r in rows], "skipped": [asdict(s) for s in skipped],
            "heatmap": str(paths["heatmap"].name) if "heatmap" in paths else None}
    write_json(paths["json"], "compare", data)
    md = [f"# {title}", ""]
    md += [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    md += ["", markdown_table(rows)]
    if judged:
        fails = failure_lines(rows)
        md += ["**All verdicts pass.**" if not fails else "**Failures:**", ""] + [f"- {f}" for f in fails]
    else:
        md += ["Different checkpoints: metrics only, no pass/fail."]
    if skipped:
        md += ["", "## Skipped", ""] + [f"- {s.line()}" for s in skipped]
    if "heatmap" in paths:
        w = worst_row(rows)
        md += ["", f"![per-pixel cosine, worst: {w.candidate} at {w.size}]({paths['heatmap'].name})"]
    write_text(paths["markdown"], "\n".join(md) + "\n")
    return paths
