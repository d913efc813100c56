"""Reading rate–metric curves from result files: icmkit's ``summary.csv`` and CompressAI's JSON."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from icmkit.errors import IcmError, one_line

# CompressAI names its metrics with a colour-space suffix; accept ours as aliases.
_ALIASES = {"psnr": ("psnr", "psnr-rgb"), "ms_ssim": ("ms_ssim", "ms-ssim", "ms-ssim-rgb")}
MAX_RESULTS_BYTES = 64 << 20  # a results file of a million rows is ~100 MB of CSV; curves are a few rows
MAX_JSON_DEPTH = 32  # CompressAI's JSON nests 2 levels deep


@dataclass(frozen=True)
class Curve:
    """One codec's rate–metric curve: rates in bpp and the metric at each, in file order."""

    name: str
    rates: list[float]
    metric: list[float]


def _pick(columns: dict, metric: str, path: Path) -> list:
    for key in _ALIASES.get(metric, (metric,)):
        if key in columns:
            return columns[key]
    raise IcmError(f"{path}: no metric {metric!r} (has {', '.join(sorted(columns))})")


def _check_json_depth(text: str, path: Path) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` before parsing it (the parser recurses)."""
    import re

    import numpy as np

    outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', "", text).encode("utf-8", "replace")
    codes = np.frombuffer(outside_strings, dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    if steps.size and int(np.cumsum(steps).max()) > MAX_JSON_DEPTH:
        raise IcmError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; not a results file")


def load_curves(path: str | Path, metric: str) -> list[Curve]:
    """All curves in a file: one per codec in a ``summary.csv``, one in a CompressAI JSON."""
    path = Path(path)
    if not path.is_file():
        raise IcmError(f"{path}: no such file")
    if path.stat().st_size > MAX_RESULTS_BYTES:
        raise IcmError(f"{path}: {path.stat().st_size:,} bytes is too large for a results file")
    if path.suffix.lower() == ".json":
        try:
            text = path.read_text()
            _check_json_depth(text, path)
            document = json.loads(text)
            results = document["results"]
            rates = [float(v) for v in results["bpp"]]
            values = [float(v) for v in _pick(results, metric, path)]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as exc:
            raise IcmError(f"{path}: not a CompressAI results file ({one_line(exc)})") from None
        return [Curve(document.get("name", path.stem), rates, values)]
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IcmError(f"{path}: cannot read CSV ({exc})") from None
    if not rows or "bpp" not in rows[0] or "codec" not in rows[0]:
        raise IcmError(f"{path}: not an icmkit summary.csv (needs codec, bpp and metric columns)")
    column = next((k for k in _ALIASES.get(metric, (metric,)) if k in rows[0]), None)
    if column is None:
        raise IcmError(f"{path}: no metric {metric!r} column")
    curves: dict[str, Curve] = {}
    for row in rows:
        if not row.get(column) or not row.get("bpp"):
            continue
        curve = curves.setdefault(row["codec"], Curve(row["codec"], [], []))
        try:
            curve.rates.append(float(row["bpp"]))
            curve.metric.append(float(row[column]))
        except ValueError:
            raise IcmError(f"{path}: non-numeric value in row {row}") from None
    if not curves:
        raise IcmError(f"{path}: no rows with values for {metric!r}")
    return list(curves.values())
