"""Bjøntegaard-delta rate and metric between two rate–metric curves.

Interpolation is delegated to the PyPI package ``bjontegaard`` (FAU-LMS), whose ``pchip`` matches the
JCT-VC CTC spreadsheet to 10 decimals. What it does not do, and icmkit adds:

- ``monotonic=True`` first replaces the metric by its isotonic (non-decreasing in rate) fit, as
  machine-accuracy curves are often non-monotonic and pchip on such points is meaningless; points
  the fit makes equal are merged (keeping the cheapest), never sorted independently;
- every result carries the overlap range it was computed over and the number of points used.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from icmkit.errors import IcmError

METHODS = {"pchip": "pchip", "akima": "akima", "poly": "cubic"}  # our name → bjontegaard's
MIN_RATE, MAX_RATE, MAX_METRIC = 1e-6, 1e6, 1e6  # bpp, and PSNR / accuracy / mAP / MS-SSIM (dB or not)


@dataclass(frozen=True)
class BDResult:
    """The Bjøntegaard deltas of a test curve against an anchor, and what they were computed over."""

    bd_rate_pct: float  # average rate difference at equal metric (negative = test needs fewer bits)
    bd_metric: float  # average metric difference at equal log-rate (positive = test is better)
    method: str
    overlap_lo: float  # metric range over which BD-rate was integrated
    overlap_hi: float
    points: int  # points used: min over both curves
    note: str = ""  # why the figures are NaN (no overlap, a flat curve), empty otherwise

    def as_dict(self) -> dict:
        return asdict(self)


def monotonic_fit(rates: np.ndarray, metric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of metric on rate, then one point per distinct fitted metric value."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(rates, kind="stable")
    rates, metric = rates[order], metric[order]
    fitted = isotonic_regression(metric, increasing=True).x
    keep = np.concatenate([[True], np.diff(fitted) > 1e-12])
    return rates[keep], fitted[keep]


def _prepare(rates, metric, monotonic: bool, label: str) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(rates, dtype=np.float64)
    metric = np.asarray(metric, dtype=np.float64)
    if rates.shape != metric.shape or rates.ndim != 1:
        raise IcmError(f"{label}: rate and metric lists differ in length")
    finite = np.isfinite(rates) & np.isfinite(metric) & (rates > 0)
    rates, metric = rates[finite], metric[finite]
    if len(rates) and (rates.min() < MIN_RATE or rates.max() > MAX_RATE or np.abs(metric).max() > MAX_METRIC):
        # LAPACK's least squares (the poly method) does not return on values like 1e300; no real curve has them
        raise IcmError(
            f"{label}: rates must lie in [{MIN_RATE:g}, {MAX_RATE:g}] bpp and metric values within ±{MAX_METRIC:g}"
        )
    if monotonic and len(rates):
        rates, metric = monotonic_fit(rates, metric)
    else:
        order = np.argsort(rates, kind="stable")  # sort the points together, never each array alone
        rates, metric = rates[order], metric[order]
    if len(rates) < 2:
        flat = " (its curve is flat: the same value at every rate)" if monotonic and len(metric) == 1 else ""
        unusable = " (no finite point with a positive rate)" if not len(rates) else ""
        raise IcmError(f"{label}: need at least 2 usable rate points, got {len(rates)}{flat}{unusable}")
    return rates, metric


def _falling(label: str, rates: np.ndarray, metric: np.ndarray) -> str:
    """Why a curve (sorted by rate) cannot be interpolated as rate of metric: its metric does not rise, end to end."""
    if metric[-1] > metric[0]:
        return ""
    return (
        f"the {label} curve's {'metric falls' if metric[-1] < metric[0] else 'metric does not rise'} as its rate "
        f"grows ({metric[0]:.4g} at {rates[0]:.4g} bpp, {metric[-1]:.4g} at {rates[-1]:.4g} bpp); "
        "try --monotonic"
    )


def bd(
    anchor_rates, anchor_metric, test_rates, test_metric, method: str = "pchip", monotonic: bool = False
) -> BDResult:
    """BD-rate (%) and BD-metric of a test curve against an anchor curve."""
    import bjontegaard

    if method not in METHODS:
        raise IcmError(f"unknown BD method {method!r}; choose one of {', '.join(METHODS)}")
    ra, ma = _prepare(anchor_rates, anchor_metric, monotonic, "anchor")
    rt, mt = _prepare(test_rates, test_metric, monotonic, "test")
    lo, hi = max(ma.min(), mt.min()), min(ma.max(), mt.max())
    points = min(len(ra), len(rt))
    falling = _falling("anchor", ra, ma) or _falling("test", rt, mt)
    if falling:
        return BDResult(math.nan, math.nan, method, float(lo), float(hi), points, falling)
    if lo >= hi:
        note = f"no overlap: anchor {ma.min():.4g}…{ma.max():.4g}, test {mt.min():.4g}…{mt.max():.4g}"
        return BDResult(math.nan, math.nan, method, lo, hi, points, note)
    if max(ra.min(), rt.min()) >= min(ra.max(), rt.max()):
        note = f"rates do not overlap: anchor {ra.min():.4g}…{ra.max():.4g} bpp, test {rt.min():.4g}…{rt.max():.4g} bpp"
        return BDResult(math.nan, math.nan, method, lo, hi, points, note)
    options = {"method": METHODS[method], "require_matching_points": False, "min_overlap": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rate = float(bjontegaard.bd_rate(ra, ma, rt, mt, **options))
            metric = float(bjontegaard.bd_psnr(ra, ma, rt, mt, **options))
        except (ValueError, AssertionError, ArithmeticError, np.linalg.LinAlgError) as exc:
            reason = str(exc) or type(exc).__name__
            raise IcmError(f"BD computation failed ({reason}); try --monotonic or another --method") from None
    return BDResult(rate, metric, method, float(lo), float(hi), points)
