"""Bench results as files and text: the seed-style plain table, markdown, JSON and the latency plot."""

from __future__ import annotations

from pathlib import Path

import torch

from ..sizes import size_label, size_name
from ..suites.bench import MODE_TITLES, BenchReport
from .figures import plot_report
from .writer import write_json, write_text


def _cell(report: BenchReport, backend: str, size, mode: str, *, ratio: bool = False) -> str:
    r = report.result(backend, size, mode)
    if r is not None:
        text = r.short().removesuffix(" ms")
        floor_ratio = r.extra.get("floor_ratio")
        return text + (f" ({floor_ratio:.1f}×)" if ratio and floor_ratio else "")
    skip = report.skip_reason(backend, size, mode)
    return skip.status if skip else "-"


def _table_rows(report: BenchReport, mode: str, *, ratio: bool) -> tuple[list[str], list[list[str]]]:
    backends = [b for b in report.backends if any(r.backend == b for r in report.results)]
    header = ["size"] + backends
    floor = report.peak_tflops is not None
    if floor:
        header.append("FLOP floor")
    rows = []
    for size in report.sizes:
        row = [size_label(size)] + [_cell(report, b, size, mode, ratio=ratio) for b in backends]
        if floor:
            row.append(f"{report.floor_ms(*size):.3f}")
        rows.append(row)
    return header, rows


def table_title(report: BenchReport, mode: str) -> str:
    synthetic = ", SYNTHETIC weights" if report.synthetic else ""
    return (f"{MODE_TITLES[mode]} latency, ms (median ± std of {report.iterations}), batch {report.batch} - "
            f"{report.backbone}{synthetic} on {report.hardware}")


def format_table(report: BenchReport, mode: str) -> str:
    """The seed-style plain-text table: one row per size, one column per backend."""
    header, rows = _table_rows(report, mode, ratio=False)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [table_title(report, mode), "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def lanes_title(report: BenchReport) -> str:
    synthetic = ", SYNTHETIC weights" if report.synthetic else ""
    return (f"device-only throughput with {report.lanes} batches in flight (runners.lanes), ms a batch (median of "
            f"spans), batch {report.batch} - {report.backbone}{synthetic} on {report.hardware}")


def _lane_results(report: BenchReport) -> list:
    return [r for r in report.results if r.mode == "lanes"]


def format_lanes(report: BenchReport) -> str:
    """One line per backend and size timed with lanes; '' when none was."""
    rows = _lane_results(report)
    if not rows:
        return ""
    lines = [lanes_title(report)]
    lines += [f"{r.backend} {size_label((r.height, r.width))}: 1 lane {r.extra['one_lane_ms']:.3f} "
              f"({r.extra['one_lane_images_per_s']:.1f} img/s), {report.lanes} lanes {r.median_ms:.3f} "
              f"({r.extra['images_per_s']:.1f} img/s), {100 * r.extra['gain']:+.1f} %" for r in rows]
    return "\n".join(lines)


def format_skipped(report: BenchReport) -> str:
    return "\n".join(s.line() for s in report.skipped)


def format_markdown(report: BenchReport) -> str:
    m = report.machine
    lines = [f"# Latency: {report.backbone} on {report.hardware}", ""]
    lines.append(f"- date {m.get('date')}, host `{m.get('host')}`, CPU {m.get('cpu')} ({m.get('cpu_count')} cores, "
                 f"{m.get('torch_threads')} torch threads), GPU {m.get('gpu') or 'none'}"
                 + (f" (driver {m['driver']})" if m.get("driver") else ""))
    versions = ", ".join(f"{k} {m[k]}" for k in ("torch", "cuda", "onnxruntime", "tensorrt", "tensorrt_rtx")
                         if m.get(k))
    lines.append(f"- {versions}")
    lines.append(f"- weights: {'SYNTHETIC ' if report.synthetic else ''}`{Path(report.weights).name}`, "
                 f"batch {report.batch}, {report.warmup} warm-up + {report.iterations} timed iterations, "
                 f"device `{report.device}`")
    if report.peak_tflops:
        lines.append(f"- FLOP floor = FLOPs / {report.peak_tflops:g} TFLOP/s ({report.peak_source}); "
                     "cells show (× floor)")
    for mode in report.modes:
        header, rows = _table_rows(report, mode, ratio=True)
        lines += ["", f"## {table_title(report, mode)}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lanes = _lane_results(report)
    if lanes:
        n = report.lanes
        lines += ["", f"## {lanes_title(report)}", "",
                  f"| backend | size | 1 lane | {n} lanes | images/s, 1 lane | images/s, {n} lanes | gain |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.backend} | {size_label((r.height, r.width))} | {r.extra['one_lane_ms']:.3f} "
                  f"| {r.median_ms:.3f} | {r.extra['one_lane_images_per_s']:.1f} | {r.extra['images_per_s']:.1f} "
                  f"| {100 * r.extra['gain']:+.1f} % |" for r in lanes]
    compiled = [r for r in report.results if r.extra.get("compile_seconds") and r.mode == report.modes[0]]
    if compiled:
        lines += ["", "## Compile time per size bucket (s, excluded from latency)", "", "| backend | size | s |",
                  "|---|---|---|"]
        lines += [f"| {r.backend} | {size_label((r.height, r.width))} | {r.extra['compile_seconds']:.1f} |"
                  for r in compiled]
    if report.batch > 1:
        lines += ["", f"## Throughput, images/s (batch {report.batch})", "", "| backend | size | mode | images/s |",
                  "|---|---|---|---|"]
        lines += [f"| {r.backend} | {size_label((r.height, r.width))} | {r.mode} | {r.extra['images_per_s']:.1f} |"
                  for r in report.results]
    lines += ["", "## GFLOPs per forward", "", "| size | GFLOP |", "|---|---|"]
    lines += [f"| {size_label(s)} | {report.flops[size_name(s)] / 1e9:.1f} |" for s in report.sizes]
    if report.skipped:
        lines += ["", "## Not measured", ""] + [f"- {line}" for line in format_skipped(report).splitlines()]
    return "\n".join(lines) + "\n"


def write_report(report: BenchReport, out_dir: str | Path, stem: str | None = None) -> dict[str, Path]:
    """`<stem>.json`, `<stem>.md` and `<stem>.png` under `out_dir`, each written atomically.

    The default stem names what was measured (backbone, device type, batch), never a timestamp.
    """
    out_dir = Path(out_dir)
    stem = stem or f"{report.backbone}_{torch.device(report.device).type}_b{report.batch}"
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    write_json(paths["json"], "bench", report.to_dict(), machine=report.machine)
    write_text(paths["markdown"], format_markdown(report))
    plot_report(report, paths["png"])
    return paths
