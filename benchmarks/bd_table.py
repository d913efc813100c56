"""Print the markdown table of an ``icm bench`` output folder: rate range, accuracy range and BD figures
of every codec against the folder's anchor (what the README's result tables are made with).

    python benchmarks/bd_table.py bench-dev200 [--metrics top1,psnr]
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

NAMES = {"top1": "top-1", "psnr": "PSNR", "top5": "top-5", "agree": "agreement", "ms_ssim": "MS-SSIM", "map": "mAP"}
UNITS = {"top1": "pp", "top5": "pp", "agree": "pp", "psnr": "dB", "ms_ssim": "", "map": "pp"}


def number(value: str, spec: str) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--metrics", default="top1,psnr")
    args = parser.parse_args()
    metrics = [m for m in args.metrics.split(",") if m]
    summary = list(csv.DictReader(open(args.folder / "summary.csv")))
    bd = list(csv.DictReader(open(args.folder / "bd.csv")))
    anchor = next((r["anchor"] for r in bd), "anchor")
    header = ["codec", "points", "bpp"] + [f"{NAMES.get(m, m)} range" for m in metrics]
    for m in metrics:
        header += [f"BD-rate {NAMES.get(m, m)} vs {anchor}", f"BD-{NAMES.get(m, m)} ({UNITS.get(m, '')})"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    summary = [r for r in summary if r.get("bpp")]  # reference rows (uncompressed inputs) have no rate
    for codec in dict.fromkeys(r["codec"] for r in summary):
        rows = [r for r in summary if r["codec"] == codec]
        bpps = [float(r["bpp"]) for r in rows]
        cells = [codec, str(len(rows)), f"{min(bpps):.3f}–{max(bpps):.3f}"]
        for m in metrics:
            values = [float(r[m]) for r in rows if r.get(m, "") not in ("", "nan")]
            cells.append(f"{min(values):.4g}–{max(values):.4g}" if values else "—")
        found = {r["metric"]: r for r in bd if r["codec"] == codec}
        for m in metrics:
            row = found.get(m, {})
            rate = number(row.get("bd_rate_pct", ""), "+.1f")
            cells += [rate + (" %" if rate != "—" else ""), number(row.get("bd_metric", ""), "+.2f")]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
