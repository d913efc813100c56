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
    from matplotlib.ticker import FuncFormatter

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
        figure, axes = plt.subplots(figsize=(7.6, 4.4), dpi=110)
        for codec, points in curves.items():
            pairs = sorted(
                (float(r["bpp"]), _value(r.get(metric, ""))) for r in points if _value(r.get(metric, "")) is not None
            )
            if pairs:
                rates, values = zip(*pairs)
                axes.plot(rates, values, marker="o", markersize=3.5, linewidth=1.4, label=codec)
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
        axes.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        axes.set_xlabel("bits per pixel (log scale)")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        # Beside the axes, not over them: curves of many codecs fill every corner of the plot area.
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
        # Each figure names its own metric: the report shows them side by side, and files travel alone.
        heading = f"{_short(label)} vs rate"
        axes.set_title(f"{heading} — {title}" if title else heading, fontsize=10)
        figure.tight_layout()
        for suffix in (".png", ".svg"):
            buffer = io.BytesIO()
            figure.savefig(buffer, format=suffix[1:], bbox_inches="tight")
            atomic_write(out_dir / f"{metric}{suffix}", buffer.getvalue())  # a killed run leaves no half figure
        plt.close(figure)
        written.append(out_dir / f"{metric}.png")
    return written
