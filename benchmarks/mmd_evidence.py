"""What the MMD term buys: the README's evidence tables, computed from ``icm bench`` folders.

    python benchmarks/mmd_evidence.py lite0=bench/dev200-lite0 lite1=bench/dev200-lite1 lite2=bench/dev200-lite2 \
        [--json evidence.json] [--plot docs/mmd-dev200.png]

Each folder is one classification bench of the same images (``summary.csv``) scored with one classifier;
the first folder also provides PSNR for the fidelity comparisons. Figures are pchip BD (the CTC method) with
an isotonic fit first for top-1, as ``icm bench`` computes them; every figure prints its overlap range and the
number of points, since BD over few points is fragile. Targets are those of the perception-consistency issue.
"""

from __future__ import annotations

import argparse
import json
import math
from functools import cache
from pathlib import Path

from icmkit.bench.bd import bd
from icmkit.bench.results import load_curves
from icmkit.errors import IcmError

MSE, MMD, HEVC, JPEG = "icm-mse", "icm-mmd", "hevc444", "jpeg"


@cache
def curves(folder: Path, metric: str) -> dict:
    return {c.name: c for c in load_curves(folder / "summary.csv", metric)}


def curve(folder: Path, codec: str, metric: str):
    found = curves(folder, metric)
    if codec not in found:
        raise IcmError(f"{folder}/summary.csv has no {codec} curve with {metric}")
    return found[codec]


def compare(folder: Path, test: str, anchor: str, metric: str) -> dict:
    a, t = curve(folder, anchor, metric), curve(folder, test, metric)
    result = bd(a.rates, a.metric, t.rates, t.metric, method="pchip", monotonic=metric != "psnr").as_dict()
    return {"test": test, "anchor": anchor, "metric": metric, "data": folder.name, **result}


def row(label: str, r: dict, target: float | None = None) -> str:
    rate, delta = r["bd_rate_pct"], r["bd_metric"]
    unit = "dB" if r["metric"] == "psnr" else "pp"
    verdict = "" if target is None else (" met" if rate <= target else " not met") + f" (target ≤ {target:+.0f} %)"
    if math.isnan(rate):
        verdict = " no overlap"
    return (
        f"| {label} | {r['test']} vs {r['anchor']} | {r['metric']} | {rate:+.1f} %{verdict} | "
        f"{delta:+.2f} {unit} | {r['overlap_lo']:.4g}–{r['overlap_hi']:.4g} | {r['points']} |"
    )


def pointwise_gains(folder: Path) -> list[str]:
    """Top-1 of icm-mmd at each of its points against icm-mse's curve there (linear in log-rate)."""
    mse, mmd = curve(folder, MSE, "top1"), curve(folder, MMD, "top1")
    reference = sorted(zip(mse.rates, mse.metric))
    lines = []
    for rate, top1 in sorted(zip(mmd.rates, mmd.metric)):
        for (r0, t0), (r1, t1) in zip(reference, reference[1:]):
            if r0 <= rate <= r1:
                expected = t0 + (t1 - t0) * math.log(rate / r0) / math.log(r1 / r0)
                lines.append(
                    f"{rate:.3f} bpp: icm-mmd {top1:.1f} %, icm-mse {expected:.1f} % ({top1 - expected:+.1f} pp)"
                )
                break
        else:
            lines.append(f"{rate:.3f} bpp: icm-mmd {top1:.1f} %, outside icm-mse's rate range")
    return lines


def plot(benches: dict[str, Path], path: Path) -> None:
    """Top-1 against rate for the two families and HEVC-444, one panel per classifier, and PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    panels = [(name, folder, "top1") for name, folder in benches.items()]
    panels.append((next(iter(benches)), next(iter(benches.values())), "psnr"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), dpi=110)
    for axis, (name, folder, metric) in zip(axes, panels):
        for codec, style in ((MSE, "o-"), (MMD, "s-"), (HEVC, "^--"), (JPEG, "v:")):
            try:
                c = curve(folder, codec, metric)
            except IcmError:
                continue
            points = sorted(zip(c.rates, c.metric))
            axis.plot([p[0] for p in points], [p[1] for p in points], style, markersize=4, label=codec)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xticks([0.1, 0.2, 0.3, 0.5, 1, 2])
        axis.set_xlabel("bpp (256² crops)")
        axis.set_ylabel("PSNR (dB)" if metric == "psnr" else f"top-1 (%), {name}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    figure.savefig(path.with_suffix(".svg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benches", nargs="+", help="NAME=FOLDER, one per classifier; the first gives PSNR")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="also draw the curves to this PNG (and an SVG beside it)")
    args = parser.parse_args()
    try:
        benches = {name: Path(folder) for name, folder in (item.split("=", 1) for item in args.benches)}
    except ValueError:
        parser.error("each bench is NAME=FOLDER")
    first = next(iter(benches))
    targets = {first: -20.0}  # the training classifier; the others were never seen in training
    results, lines = [], []
    lines.append("| classifier | curves | metric | BD-rate | BD-metric | overlap | points |")
    lines.append("|---|---|---|---|---|---|---|")
    try:
        for name, folder in benches.items():
            r = compare(folder, MMD, MSE, "top1")
            results.append({**r, "classifier": name})
            lines.append(row(name, r, targets.get(name, -10.0)))
        r = compare(benches[first], MMD, MSE, "psnr")
        results.append({**r, "classifier": "—"})
        lines.append(row("— (fidelity cost)", r))
        for name, folder in benches.items():
            if HEVC not in curves(folder, "top1"):
                continue  # HEVC-444 is optional beside the unseen classifiers
            for test in (MMD, MSE):
                r = compare(folder, test, HEVC, "top1")
                results.append({**r, "classifier": name})
                lines.append(row(name, r, -30.0 if (test, name) == (MMD, first) else None))
        for anchor in (JPEG, HEVC):
            for test in (MSE, MMD):
                r = compare(benches[first], test, anchor, "psnr")
                results.append({**r, "classifier": "—"})
                lines.append(row("— (fidelity)", r))
    except IcmError as exc:
        raise SystemExit(f"error: {exc}") from None
    print("\n".join(lines))
    print(f"\n{first}, icm-mmd against icm-mse at each icm-mmd point:")
    print("\n".join(pointwise_gains(benches[first])))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(benches, args.plot)


if __name__ == "__main__":
    main()
