"""Every figure the project draws, in one module: per-pixel cosine heat-maps (compare), latency
curves (bench) and segmentation panels (verify).

Figures are drawn on matplotlib's Agg canvas, never pyplot: files only, no window, no global backend
switch; each PNG is written atomically.

Segmentation PNGs (`render_segmentation`, used by `segment` and `wordfree`): input | colour mask |
legend. Up to 20 labels get distinct colours (tab20 without its greys) in area order, so the largest
regions get the most distinct hues; beyond that the largest `max_legend - 1` keep their colours and
all other words are drawn in one grey, listed as a single legend entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..sizes import size_label
from ..store.atomic import atomic_path

if TYPE_CHECKING:
    from ..suites.bench import BenchReport
    from ..suites.compare import CompareRow

MODE_TITLES = {"device": "device-only", "end-to-end": "end-to-end"}


def verdict_cell(row) -> str:
    if row.verdict is None:
        return "-"
    if row.verdict:
        return "PASS"
    return "FAIL: " + ", ".join(f.split(" ", 1)[0] for f in row.verdict.failures)


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
                 f"verdict {verdict_cell(row)}", fontsize=9)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return output


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """Latency vs input side, log y: one line per backend and mode, plus the FLOP floor when known."""
    # A Figure on the Agg canvas, not pyplot: files only, never a window, no global backend switch
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(9.5, 5.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    styles = {"device": ("-", "o"), "end-to-end": ("--", "s")}
    xs = [(h * w) ** 0.5 for h, w in report.sizes]
    for i, backend in enumerate(report.backends):
        for mode in report.modes:
            points = [(x, r) for x, s in zip(xs, report.sizes) if (r := report.result(backend, s, mode))]
            if not points:
                continue
            line, marker = styles[mode]
            medians = [r.median_ms for _, r in points]
            # min .. p90 bars: asymmetric and always positive, unlike ± std on a log axis
            spread = [[r.median_ms - r.min_ms for _, r in points], [r.p90_ms - r.median_ms for _, r in points]]
            ax.errorbar([x for x, _ in points], medians, yerr=spread, color=colors(i % 10), linestyle=line,
                        marker=marker, markersize=5, capsize=3, linewidth=1.6,
                        label=f"{backend} ({MODE_TITLES[mode]})")
    if report.peak_tflops:
        ax.plot(xs, [report.floor_ms(*s) for s in report.sizes], color="black", linestyle=":", linewidth=1.8,
                label=f"FLOP floor ({report.peak_tflops:g} TFLOP/s)")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(xs, [size_label(s) for s in report.sizes])
    ax.set_xlabel("input size (px)")
    ax.set_ylabel("latency per batch (ms, log scale)\nmedian, bars min .. p90")
    synthetic = ", synthetic weights" if report.synthetic else ""
    ax.set_title(f"{report.backbone}{synthetic}, batch {report.batch}, {report.iterations} iterations\n"
                 f"{report.hardware}, {report.machine.get('date')}, torch {report.machine.get('torch')}",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", axis="y", alpha=0.2)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def render_side_by_side(pil, segmentations: dict, output: Path, *, title: str, dpi: int = 100) -> Path:
    """Input image, then one overlay per backend, one shared legend (colours by the first backend's areas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch


    first = next(iter(segmentations.values()))
    entries, colours = legend_entries(first.labels, first.fractions)
    entries = [(label, rgb) for (_, rgb), label in zip(entries, sorted(
        first.labels, key=lambda lab: -first.fractions.get(lab, 0.0)))]
    n = len(segmentations) + 1
    cols = min(n, 3)  # a grid, not one long row: six panels in a row made a 3066x410 px strip
    rows = -(-n // cols)
    aspect = pil.width / pil.height
    panel = 3.2
    fig = Figure(figsize=(cols * panel * aspect + 1.8, rows * (panel + 0.6) + 0.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(np.atleast_1d(fig.subplots(rows, cols)).ravel())
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


# segmentation PNGs ------------------------------------------------------------------------------
OTHERS_GREY = (0.62, 0.62, 0.62)
DISPLAY_MAX_SIDE = 1600  # px of the input shown in the PNG: 4x the panel height at the default dpi


def _palette(n: int) -> np.ndarray:
    """Distinct colours: tab20 without its two greys (grey means "other words"), then tab20b."""
    from matplotlib import colormaps

    tab20, tab20b = colormaps["tab20"].colors, colormaps["tab20b"].colors
    order = [i for i in list(range(0, 20, 2)) + list(range(1, 20, 2)) if i not in (14, 15)]
    colours = [tab20[i] for i in order] + [tab20b[i] for i in (0, 8, 4, 12, 16, 2, 10, 6, 14, 18)]
    return np.array([colours[i % len(colours)] for i in range(n)], dtype=np.float64)


def legend_entries(labels: list[str], fractions: dict[str, float], max_legend: int = 20):
    """[(text, rgb)] and the per-label colour table; labels beyond the limit share one grey."""
    by_area = sorted(range(len(labels)), key=lambda i: -fractions.get(labels[i], 0.0))
    shown = by_area if len(labels) <= max_legend else by_area[: max_legend - 1]
    colours = np.tile(np.array(OTHERS_GREY), (len(labels), 1))
    colours[shown] = _palette(len(shown))
    entries = [(f"{labels[i]}  {100 * fractions.get(labels[i], 0.0):.1f}%", tuple(colours[i])) for i in shown]
    rest = [i for i in by_area if i not in set(shown)]
    if rest:
        share = sum(fractions.get(labels[i], 0.0) for i in rest)
        entries.append((f"{len(rest)} other words  {100 * share:.1f}%", OTHERS_GREY))
    return entries, colours


def display_view(pil, label_map: np.ndarray, max_side: int = DISPLAY_MAX_SIDE):
    """The image and label map reduced to what the PNG can show (integer factor, nearest labels).

    The panels are ~400 px high, so drawing a 50 MP image at full resolution would only cost memory
    (matplotlib makes float RGBA copies: gigabytes) for pixels the PNG cannot show.
    """
    factor = -(-max(pil.width, pil.height) // max_side)
    if factor <= 1:
        return pil, label_map
    small = pil.reduce(factor)
    rows = np.minimum(np.arange(small.height) * factor + factor // 2, label_map.shape[0] - 1)
    cols = np.minimum(np.arange(small.width) * factor + factor // 2, label_map.shape[1] - 1)
    return small, label_map[rows][:, cols]


def render_segmentation(image, result, output: str | Path, *, title: str | None = None,
                        max_legend: int = 20, dpi: int = 100) -> Path:
    """Write the three-panel PNG for a `Segmentation` / `WordFreeSegmentation` and the image shown."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ..images import load_image

    pil = load_image(image, max_pixels=None)
    label_map = result.label_map
    if label_map.shape != (pil.height, pil.width):
        raise ValueError(f"label map {label_map.shape} does not match the image {(pil.height, pil.width)}")
    entries, colours = legend_entries(result.labels, result.fractions, max_legend)
    pil, label_map = display_view(pil, label_map)
    mask = colours[label_map]

    aspect = pil.width / pil.height
    panel_h = 4.0
    fig = Figure(figsize=(2 * panel_h * aspect + 3.6, panel_h + (0.5 if title else 0.2)), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 3, width_ratios=[aspect, aspect, 3.6 / panel_h], wspace=0.04,
                            left=0.01, right=0.99, bottom=0.02, top=0.9 if title else 0.94)
    ax_img, ax_mask, ax_leg = (fig.add_subplot(grid[0, i]) for i in range(3))
    ax_img.imshow(np.asarray(pil))
    ax_img.set_title("input", fontsize=10)
    ax_mask.imshow(np.asarray(pil), alpha=1.0)
    ax_mask.imshow(mask, alpha=0.75, interpolation="nearest")
    ax_mask.set_title("segmentation", fontsize=10)
    for ax in (ax_img, ax_mask, ax_leg):
        ax.set_axis_off()
    handles = [Patch(facecolor=rgb, edgecolor="black", linewidth=0.5, label=text) for text, rgb in entries]
    ax_leg.legend(handles=handles, loc="center left", frameon=False, fontsize=9 if len(handles) <= 12 else 8,
                  handlelength=1.4, borderaxespad=0.0, title="label  (share of pixels)", title_fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    output = Path(output)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return output
