"""Reading rate–metric curves from result files: icmkit's ``summary.csv`` and CompressAI's JSON."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from icmkit.errors import IcmError

# CompressAI names its metrics with a colour-space suffix; accept ours as aliases.
_ALIASES = {"psnr": ("psnr", "psnr-rgb"), "ms_ssim": ("ms_ssim", "ms-ssim", "ms-ssim-rgb")}


@dataclass(frozen=True)
class Curve:
    name: str
    rates: list[float]
    metric: list[float]


def _pick(columns: dict, metric: str, path: Path) -> list:
    for key in _ALIASES.get(metric, (metric,)):
        if key in columns:
            return columns[key]
    raise IcmError(f"{path}: no metric {metric!r} (has {', '.join(sorted(columns))})")


def load_curves(path: str | Path, metric: str) -> list[Curve]:
    """All curves in a file: one per codec in a ``summary.csv``, one in a CompressAI JSON."""
    path = Path(path)
    if not path.is_file():
        raise IcmError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(path.read_text())
            results = document["results"]
            rates = [float(v) for v in results["bpp"]]
            values = [float(v) for v in _pick(results, metric, path)]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IcmError(f"{path}: not a CompressAI results file ({exc.__class__.__name__}: {exc})") from None
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
