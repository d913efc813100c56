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
from dataclasses import dataclass, field
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
TIME_COLUMNS = ("enc_s", "dec_s")  # seconds in the CSV files; milliseconds wherever a person reads them
# How a person reads a summary value (report tables, ``icm bench``'s table): one precision per column, so
# 3.3 ms sits under 1050.0 ms rather than 0.003313 under 1.05.
DISPLAY_FORMATS = {
    "bpp": ".4f",
    "psnr": ".2f",
    "ms_ssim": ".4f",
    "top1": ".1f",
    "top5": ".1f",
    "agree": ".1f",
    "map": ".2f",
    "map50": ".2f",
    "enc_s": ".1f",  # after the conversion to ms
    "dec_s": ".1f",
    "bd_rate_pct": "+.2f",
    "bd_metric": "+.4f",
    "overlap_lo": ".4g",
    "overlap_hi": ".4g",
}
DISPLAY_HEADERS = {"enc_s": "enc ms", "dec_s": "dec ms", "bd_rate_pct": "BD-rate %", "bd_metric": "BD-metric"}
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


def display_header(column: str) -> str:
    """A column's heading for people: ``enc_s`` → ``enc ms`` (times are shown in milliseconds)."""
    return DISPLAY_HEADERS.get(column, column)


def display_value(column: str, value) -> str:
    """A summary or BD value for people, with the column's one precision ("" for no value, times in ms)."""
    if value in ("", None):
        return ""
    if column not in DISPLAY_FORMATS:  # a codec, a quality, a count, a note: as written
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return ""
    return format(number * 1000.0 if column in TIME_COLUMNS else number, DISPLAY_FORMATS[column])


def _csv_value(column: str, value):
    if not isinstance(value, float):
        return value
    if column in TIME_COLUMNS:  # one precision for every time (microseconds), not 0.003313 beside 1.05
        return "" if math.isnan(value) else f"{value:.6f}"
    return f"{value:.6g}"


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(k, v) for k, v in row.items()})
    atomic_write(path, buffer.getvalue().encode())


@dataclass
class ReportRows:
    """The result rows a report of one run shows: this run's plan, and the other codecs an earlier run left in
    the same folder (all on this run's images), so that a rerun with fewer codecs does not hide them."""

    rows: list[dict]
    planned: int = 0  # rows of this run's codec × quality plan
    carried: int = 0  # rows of other codecs, kept in the report
    carried_codecs: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # ``codec:quality`` of earlier runs left out: images missing

    def message(self) -> str:
        """One sentence on the other codecs (empty when there are none)."""
        parts = []
        if self.carried:
            parts.append(
                f"{self.carried:,} rows of other codecs from earlier runs in this folder "
                f"({', '.join(self.carried_codecs)}) kept in the report"
            )
        if self.partial:
            parts.append(
                f"{len(self.partial)} codec × quality point(s) of earlier runs left out: they lack some of this "
                f"run's images ({', '.join(self.partial[:6])}{', …' if len(self.partial) > 6 else ''})"
            )
        return "; ".join(parts)


def resume_message(kept: int, path: Path, carried: ReportRows | None = None) -> str:
    """What ``icm bench`` says when its folder already holds rows: this plan's kept, other codecs' shown."""
    parts = [f"resumed: {kept:,} rows of this run's plan kept from an earlier run in {path}"] if kept else []
    other = carried.message() if carried is not None else ""
    if other:
        parts.append(other if kept else f"{path} holds results of earlier runs: {other}")
    return "; ".join(parts)


def report_rows(rows: list[dict], planned: set[tuple[str, str]], keys: set[str]) -> ReportRows:
    """Rows of ``planned`` ``(codec, quality)`` pairs on ``keys``, plus every other codec × quality of the
    file that covers all of ``keys`` (means over other images would not compare); in file order."""
    on_keys = [r for r in rows if r["key"] in keys]
    covered: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in on_keys:
        covered[(row["codec"], row["quality"])].add(row["key"])
    complete = {pair for pair, found in covered.items() if pair in planned or found >= keys}
    kept = [r for r in on_keys if (r["codec"], r["quality"]) in complete]
    others = [r for r in kept if (r["codec"], r["quality"]) not in planned]
    return ReportRows(
        rows=kept,
        planned=len(kept) - len(others),
        carried=len(others),
        carried_codecs=list(dict.fromkeys(r["codec"] for r in others)),
        partial=[f"{c}:{q}" for (c, q) in covered if (c, q) not in complete],
    )
