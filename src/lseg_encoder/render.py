"""PNG of a segmentation: input | colour mask | legend, side by side.

Always matplotlib's Agg backend through an explicit `Figure` (no pyplot state, never a window, safe
on headless servers and in threads); the file is written atomically.

Memory: the image and label map are reduced to at most `DISPLAY_MAX_SIDE` px before drawing
(`display_view`), so the PNG costs the same for a 50 MP photo as for a thumbnail.

Colours: up to 20 labels get distinct colours (tab20 without its greys) in area order, so the largest regions get the
most distinct hues. Word-free results can find hundreds of words: the largest `max_legend - 1` keep
their colours and all others are drawn in one grey, listed as a single legend entry, so the legend
stays readable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .store.atomic import atomic_path

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

    from .images import load_image

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
