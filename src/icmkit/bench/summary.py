"""Aggregation of ``results.csv``: per codec × quality means (``summary.csv``) and BD figures of every
codec against the anchor on every metric (``bd.csv``)."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from icmkit.bench.bd import bd
from icmkit.errors import IcmError
from icmkit.fileio import atomic_write

SUMMARY_COLUMNS = ["codec", "quality", "n", "bpp", "psnr", "ms_ssim", "top1", "top5", "agree", "map", "map50",
                   "enc_s", "dec_s"]
BD_COLUMNS = ["codec", "anchor", "metric", "bd_rate_pct", "bd_metric", "method", "overlap_lo", "overlap_hi", "points"]
ACCURACY_METRICS = ("top1", "top5", "agree", "map", "map50")  # in %, fitted monotonically for BD
PSNR_CAP = 100.0  # a lossless image's infinite PSNR counts as 100 dB in means


def _mean(values: list[str], scale: float = 1.0) -> float | str:
    numbers = [min(float(v), PSNR_CAP) for v in values if v not in ("", None)]
    numbers = [v for v in numbers if not math.isnan(v)]
    return float(np.mean(numbers)) * scale if numbers else ""


def summarize(rows: list[dict], task_metrics=None) -> list[dict]:
    """Means per codec × quality; ``task_metrics(codec, quality, rows)`` adds set-level metrics (mAP)."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["codec"], int(row["quality"]))].append(row)
    summary = []
    for (codec, quality), members in groups.items():
        record = {"codec": codec, "quality": quality, "n": len(members)}
        for column in ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s"):
            record[column] = _mean([m.get(column, "") for m in members])
        for column in ("top1", "top5", "agree"):
            record[column] = _mean([m.get(column, "") for m in members], scale=100.0)
        record["map"] = record["map50"] = ""
        if task_metrics is not None:
            record.update(task_metrics(codec, quality, members))
        summary.append(record)
    order = {name: i for i, name in enumerate(dict.fromkeys(r["codec"] for r in rows))}
    return sorted(summary, key=lambda r: (order[r["codec"]], r["bpp"] if r["bpp"] != "" else 0))


def bd_table(summary: list[dict], anchor: str) -> list[dict]:
    """Every codec against ``anchor`` on every metric with values (pchip; monotonic fit for accuracy)."""
    curves: dict[str, list[dict]] = defaultdict(list)
    for record in summary:
        curves[record["codec"]].append(record)
    if anchor not in curves:
        return []
    table = []
    metrics = [m for m in ("psnr", "ms_ssim", *ACCURACY_METRICS) if any(r[m] != "" for r in summary)]
    for codec, points in curves.items():
        if codec == anchor:
            continue
        for metric in metrics:
            a = [(r["bpp"], r[metric]) for r in curves[anchor] if r[metric] != ""]
            t = [(r["bpp"], r[metric]) for r in points if r[metric] != ""]
            if len(a) < 2 or len(t) < 2:
                continue
            try:
                result = bd(*zip(*a), *zip(*t), method="pchip", monotonic=metric in ACCURACY_METRICS).as_dict()
            except IcmError:  # e.g. an accuracy curve that is flat everywhere: no BD figure exists
                result = {"bd_rate_pct": math.nan, "bd_metric": math.nan, "method": "pchip",
                          "overlap_lo": math.nan, "overlap_hi": math.nan, "points": min(len(a), len(t))}
            table.append({"codec": codec, "anchor": anchor, "metric": metric, **result})
    return table


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, buffer.getvalue().encode())
