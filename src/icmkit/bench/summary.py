"""Aggregation of ``results.csv``: per codec × quality means (``summary.csv``) and BD figures of every
codec against the anchor on every metric (``bd.csv``).

Values a codec does not have stay empty (``""``) rather than NaN: the fidelity columns of a feature codec
(it decodes no pixels), the task columns of a fidelity run. ``summary.csv`` may end with reference records
— the task model on uncompressed inputs, ``codec`` in parentheses, no ``quality`` and no ``bpp`` — which
the BD table and the curves leave out (they have no rate)."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from icmkit.bench.bd import bd
from icmkit.codecs.base import parse_quality
from icmkit.errors import IcmError
from icmkit.fileio import atomic_write
from icmkit.ratecontrol.adaptive import base_name

SUMMARY_COLUMNS = [
    "codec",
    "quality",
    "n",
    "bpp",
    "psnr",
    "ms_ssim",
    "top1",
    "top5",
    "agree",
    "map",
    "map50",
    "enc_s",
    "dec_s",
]
BD_COLUMNS = [
    "codec",
    "anchor",
    "metric",
    "bd_rate_pct",
    "bd_metric",
    "method",
    "overlap_lo",
    "overlap_hi",
    "points",
    "note",
]
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
        groups[(row["codec"], parse_quality(row["quality"]))].append(row)
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


def has_rate(record: dict) -> bool:
    """Whether a summary record is a point of a rate curve (reference records have no ``bpp``)."""
    return _number(record.get("bpp", ""))


def _number(value) -> bool:
    if value in ("", None):
        return False
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def bd_table(summary: list[dict], anchor: str) -> list[dict]:
    """Every codec against ``anchor`` on every metric with values (pchip; monotonic fit for accuracy)."""
    curves: dict[str, list[dict]] = defaultdict(list)
    for record in summary:
        if has_rate(record):  # reference records (uncompressed inputs) have no rate and no curve
            curves[record["codec"]].append(record)
    if anchor not in curves:
        return []
    table = []
    metrics = [
        m
        for m in ("psnr", "ms_ssim", *ACCURACY_METRICS)
        if any(r.get(m, "") != "" for points in curves.values() for r in points)
    ]
    # every codec against the anchor; an adaptive codec (``base@mode``) also against its own fixed-quality curve
    pairs = [(codec, anchor) for codec in curves if codec != anchor]
    pairs += [(codec, base) for codec in curves if (base := base_name(codec)) in curves and base != anchor]
    for codec, reference in pairs:
        points = curves[codec]
        for metric in metrics:  # a codec without values of a metric (a feature codec's PSNR) gets no row
            a = [(r["bpp"], r[metric]) for r in curves[reference] if _number(r.get(metric, ""))]
            t = [(r["bpp"], r[metric]) for r in points if _number(r.get(metric, ""))]
            if len(a) < 2 or len(t) < 2:
                continue
            try:
                result = bd(*zip(*a), *zip(*t), method="pchip", monotonic=metric in ACCURACY_METRICS).as_dict()
            except IcmError as exc:  # e.g. an accuracy curve that is flat everywhere: no BD figure exists
                result = {
                    "bd_rate_pct": math.nan,
                    "bd_metric": math.nan,
                    "method": "pchip",
                    "overlap_lo": math.nan,
                    "overlap_hi": math.nan,
                    "points": min(len(a), len(t)),
                    "note": str(exc),
                }
            table.append({"codec": codec, "anchor": reference, "metric": metric, **result})
    return table


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, buffer.getvalue().encode())
