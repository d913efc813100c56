"""Rate–metric curves from ``summary.csv`` records, one figure per metric, as PNG and SVG."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

LABELS = {
    "psnr": "PSNR (dB, RGB)", "ms_ssim": "MS-SSIM", "top1": "top-1 accuracy (%)", "top5": "top-5 accuracy (%)",
    "agree": "agreement with uncompressed prediction (%)", "map": "mAP@[.5:.95] (%)", "map50": "mAP@.5 (%)",
}


def plot_curves(summary: list[dict], out_dir: Path, title: str = "") -> list[Path]:
    """Write ``<metric>.png`` and ``<metric>.svg`` for every metric that has values; return the PNGs."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    out_dir.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = defaultdict(list)
    for record in summary:
        curves[record["codec"]].append(record)
    written = []
    for metric, label in LABELS.items():
        if not any(r.get(metric, "") != "" for r in summary):
            continue
        figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        for codec, points in curves.items():
            pairs = sorted((float(r["bpp"]), float(r[metric])) for r in points if r.get(metric, "") != "")
            if pairs:
                rates, values = zip(*pairs)
                axes.plot(rates, values, marker="o", markersize=3.5, linewidth=1.4, label=codec)
        # Log rate axis: anchor grids span 0.1–5 bpp, and the low rates, where codecs differ most for
        # machines, would otherwise be squeezed into the left tenth of the plot.
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        axes.set_xlabel("bits per pixel (log scale)")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        if title:
            axes.set_title(title, fontsize=10)
        figure.tight_layout()
        for suffix in (".png", ".svg"):
            figure.savefig(out_dir / f"{metric}{suffix}")
        plt.close(figure)
        written.append(out_dir / f"{metric}.png")
    return written
