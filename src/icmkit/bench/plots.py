"""Rate–metric curves from ``summary.csv`` records, one figure per metric, as PNG and SVG.

Codecs without values of a metric (a feature codec's PSNR) are left out of that figure; reference records
(the task model on uncompressed inputs: no rate) become dashed horizontal lines on the accuracy figures."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path

from icmkit.bench.summary import has_rate
from icmkit.fileio import atomic_write

LABELS = {
    "psnr": "PSNR (dB, RGB)",
    "ms_ssim": "MS-SSIM",
    "top1": "top-1 accuracy (%)",
    "top5": "top-5 accuracy (%)",
    "agree": "agreement with uncompressed prediction (%)",
    "map": "mAP@[.5:.95] (%)",
    "map50": "mAP@.5 (%)",
}


REFERENCE_METRICS = ("top1", "top5", "map", "map50")  # what a reference line means on the same axis
# Sized to be read at 1:1: 10 × 4.6 in at 130 dpi is a 1300 px PNG (the SVG: 720 pt, 960 CSS px, and vector),
# and no text is smaller than 11 pt (≥ 14 CSS px wherever the report shows a plot at ≥ 900 px wide).
FIGSIZE = (10.0, 4.6)
DPI = 130
FONT_SIZES = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
}
MIN_FONT_PT = 11


def _value(value) -> float | None:
    if value in ("", None):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _short(label: str) -> str:
    """The metric's name without its unit: ``top-1 accuracy (%)`` → ``top-1 accuracy``."""
    return label.split(" (")[0]


def plot_curves(summary: list[dict], out_dir: Path, title: str = "") -> list[Path]:
    """Write ``<metric>.png`` and ``<metric>.svg`` for every metric that has values; return the PNGs."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = defaultdict(list)
    references = [r for r in summary if not has_rate(r)]
    for record in summary:
        if has_rate(record):
            curves[record["codec"]].append(record)
    written = []
    for metric, label in LABELS.items():
        if not any(_value(r.get(metric, "")) is not None for points in curves.values() for r in points):
            continue
        with plt.rc_context(FONT_SIZES):
            written.append(_figure(curves, references, metric, label, title, out_dir))
    return written


def _minor_label(axes):
    """Labels of the log rate axis's minor ticks: every one when the rates span less than a decade (else the
    axis could show no number at all: 0.4–0.95 bpp has no power of ten), 2× and 5× of a decade otherwise."""

    def label(value: float, _) -> str:
        low, high = axes.get_xlim()
        narrow = low > 0 and high / low < 10
        leading = f"{value:.0e}"[0]  # the first significant digit: 5 of 0.5 and of 50
        return f"{value:g}" if narrow or leading in "25" else ""

    return label


def _figure(curves: dict, references: list[dict], metric: str, label: str, title: str, out_dir: Path) -> Path:
    """One metric's figure, written as PNG and SVG; returns the PNG."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    figure, axes = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for codec, points in curves.items():
        pairs = sorted(
            (float(r["bpp"]), _value(r.get(metric, ""))) for r in points if _value(r.get(metric, "")) is not None
        )
        if pairs:
            rates, values = zip(*pairs)
            axes.plot(rates, values, marker="o", markersize=5, linewidth=1.8, label=codec)
    if metric in REFERENCE_METRICS:
        for i, record in enumerate(r for r in references if _value(r.get(metric, "")) is not None):
            axes.axhline(
                _value(record[metric]),
                linestyle=(0, (4, 2 + 2 * i)),
                linewidth=1.0,
                color=("0.25", "0.5", "0.65")[i % 3],
                label=record["codec"],
            )
    # Log rate axis: anchor grids span 0.1–5 bpp, and the low rates, where codecs differ most for
    # machines, would otherwise be squeezed into the left tenth of the plot.
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(_minor_label(axes)))
    axes.set_xlabel("bits per pixel (log scale)")
    axes.set_ylabel(label)
    axes.grid(True, alpha=0.3)
    # Beside the axes, not over them: curves of many codecs fill every corner of the plot area.
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    # Each figure names its own metric: the report shows them side by side, and files travel alone.
    heading = f"{_short(label)} vs rate"
    axes.set_title(f"{heading} — {title}" if title else heading)
    figure.tight_layout()
    for suffix in (".png", ".svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix[1:], bbox_inches="tight")
        atomic_write(out_dir / f"{metric}{suffix}", buffer.getvalue())  # a killed run leaves no half figure
    plt.close(figure)
    return out_dir / f"{metric}.png"
