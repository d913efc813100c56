"""The pixel codecs' evidence: fidelity against the anchors, what the MMD term buys, what the context buys.

    python benchmarks/pixel_evidence.py report lite0=bench/dev200-lite0 lite1=bench/dev200-lite1 \
        lite2=bench/dev200-lite2 [--ablation bench/dev200-context] [--sweep bench/dev200-beta] [--json evidence.json] \
        [--plot docs/pixel-dev200.png]
    python benchmarks/pixel_evidence.py ablate --data ../shared/data/imagenet-dev200 --out bench/dev200-context \
        --anchor no-context context=RUN_DIR no-context=RUN_DIR
    python benchmarks/pixel_evidence.py ablate --data ../shared/data/imagenet-dev200 --out bench/dev200-beta \
        beta-0=RUN_DIR beta-2=RUN_DIR beta-5=RUN_DIR beta-10=RUN_DIR

``report``: each folder is one classification bench of the same images (``summary.csv``) scored with one
classifier; the first also provides PSNR and the anchors (HEVC-444, WebP, JPEG). Figures are pchip BD (the
CTC method) with an isotonic fit first for top-1, as ``icm bench`` computes them; every figure prints its
overlap range and the number of points, since BD over few points is fragile. Targets are those of the
pixel-codecs-v2 issue. ``ablate`` benches variable-rate runs (their ``final.safetensors``, codec ``pixel-LABEL``)
at the default grid, so that what one change buys is a BD-rate at equal training budget: the context model
(``--ablation``: context vs no-context on PSNR) and the β sweep of the MMD term (``--sweep``: each β against
β = 0 on Lite0 top-1 and on PSNR).
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

MSE, MMD, HEVC, JPEG, WEBP = "icm-mse", "icm-mmd", "hevc444", "jpeg", "webp"
PIXEL_RUN = "pixel-"  # the codec name of an ablation's run: pixel-LABEL
CONTEXT, NO_CONTEXT = PIXEL_RUN + "context", PIXEL_RUN + "no-context"
# PSNR BD-rate targets of icm-mse against the anchors (negative: fewer bits than the anchor).
FIDELITY_TARGETS = {HEVC: 15.0, WEBP: -20.0}


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


def ablate(args) -> None:
    """Bench variable-rate runs (``LABEL=RUN_DIR``, codec ``pixel-LABEL``) on the default grid, in one process."""
    from icmkit.bench.benchmark import BenchOptions, run_bench
    from icmkit.codecs import register_codec
    from icmkit.codecs.learned import VariableRatePixelCodec

    try:
        runs = dict(item.split("=", 1) for item in args.runs)
    except ValueError:
        raise SystemExit("error: each run is LABEL=RUN_DIR") from None
    anchor = args.anchor or next(iter(runs))
    if anchor not in runs:
        raise SystemExit(f"error: --anchor {anchor}: not one of the runs ({', '.join(runs)})")
    for label, folder in runs.items():
        weights = Path(folder) / "final.safetensors"
        if not weights.exists():
            raise SystemExit(f"{weights}: no final weights (is the run finished?)")
        register_codec(VariableRatePixelCodec.from_weights_file(weights, name=PIXEL_RUN + label))
    # One process: the codecs registered here are not visible to worker processes.
    codecs = ",".join(PIXEL_RUN + label for label in runs)
    options = BenchOptions(out=args.out, data=args.data, codecs=codecs, anchor=PIXEL_RUN + anchor, workers=1)
    outcome = run_bench(options)
    print(f"{outcome.results}: {len(outcome.summary)} summary rows")


def sweep_rows(folder: Path, anchor: str) -> tuple[list[dict], list[str]]:
    """Every ``pixel-*`` curve of a sweep bench against ``pixel-ANCHOR``, on Lite0 top-1 and on PSNR."""
    base = PIXEL_RUN + anchor
    labels = [name for name in curves(folder, "top1") if name.startswith(PIXEL_RUN) and name != base]
    results, lines = [], []
    for name in labels:
        # ablate benches with the default classifier, Lite0; PSNR has none
        for metric, classifier, label in (("top1", "lite0", "lite0"), ("psnr", "—", "— (fidelity)")):
            r = compare(folder, name, base, metric)
            results.append({**r, "classifier": classifier, "sweep": name})
            lines.append(row(label, r))
    return results, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="print the evidence from bench folders")
    rep.add_argument("benches", nargs="+", help="NAME=FOLDER, one per classifier; the first gives PSNR")
    rep.add_argument("--ablation", type=Path, help="folder written by the ablate command")
    rep.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    rep.add_argument("--plot", type=Path, help="also draw the curves to this PNG (and an SVG beside it)")
    rep.add_argument("--sweep", type=Path, help="folder written by the ablate command for the β sweep")
    rep.add_argument("--sweep-anchor", default="beta-0", help="the sweep's run the others are compared with")
    abl = sub.add_parser("ablate", help="bench runs of an ablation (the context, the β sweep) at equal budget")
    abl.add_argument("--data", type=Path, required=True)
    abl.add_argument("--out", type=Path, required=True)
    abl.add_argument("--anchor", help="the run the others are compared with (default: the first)")
    abl.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    args = parser.parse_args()
    if args.command == "ablate":
        ablate(args)
        return
    report(args)


def report(args) -> None:
    try:
        benches = {name: Path(folder) for name, folder in (item.split("=", 1) for item in args.benches)}
    except ValueError:
        raise SystemExit("error: each bench is NAME=FOLDER") from None
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
        for anchor in (JPEG, WEBP, HEVC):
            if anchor not in curves(benches[first], "psnr"):
                continue
            for test in (MSE, MMD):
                r = compare(benches[first], test, anchor, "psnr")
                results.append({**r, "classifier": "—"})
                lines.append(row("— (fidelity)", r, FIDELITY_TARGETS.get(anchor) if test == MSE else None))
        if args.ablation:
            r = compare(args.ablation, CONTEXT, NO_CONTEXT, "psnr")
            results.append({**r, "classifier": "—", "ablation": "checkerboard context"})
            lines.append(row("— (context ablation)", r))
        if args.sweep:
            found, found_lines = sweep_rows(args.sweep, args.sweep_anchor)
            results += found
            lines += found_lines
    except IcmError as exc:
        raise SystemExit(f"error: {exc}") from None
    print("\n".join(lines))
    print(f"\n{first}, icm-mmd against icm-mse at each icm-mmd point:")
    print("\n".join(pointwise_gains(benches[first])))
    print("\nrate range (bpp) per family:")
    for codec in (MSE, MMD):
        rates = sorted(curve(benches[first], codec, "psnr").rates)
        print(f"{codec}: {rates[0]:.3f}–{rates[-1]:.3f} ({len(rates)} points)")
        results.append({"range": codec, "bpp_lo": rates[0], "bpp_hi": rates[-1]})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(benches, args.plot)


if __name__ == "__main__":
    main()
