"""What the DICM feature codec buys: the README's evidence, from ``icm bench`` folders.

    # the ablations: bench the variants' weights (run folders of scripts/train_dicm.sh) on the dev images
    python benchmarks/dicm_evidence.py ablate --data ../shared/data/imagenet-dev200 --out bench/dev200-ablations \
        full=RUNS/icm-dicm-lite0 re=RUNS/ablation-re conv=RUNS/ablation-conv no-ckbd=RUNS/ablation-no-ckbd
    # the figures: targets against HEVC-444 and icm-mmd, the low-rate gaps, the ablations, the physical limit
    python benchmarks/dicm_evidence.py report bench/dev200-lite0 [--ablations bench/dev200-ablations] [--json out.json]
    # one BD figure between two codecs of a bench folder (e.g. bf16 vs float32 training at equal steps)
    python benchmarks/dicm_evidence.py compare BENCH dicm-bf16 dicm-fp32 --json out.json
    # a new family (a weights file benched under its own name) against the shipped one as well
    python benchmarks/dicm_evidence.py report BENCH --family dicm-v3 --baseline icm-dicm-lite0 --json out.json

BD figures are pchip (the CTC method) with an isotonic fit first (accuracy curves), as ``icm bench`` computes
them; each prints its overlap and number of points. The gaps to the uncompressed model are read at the
family's measured points (the best top-1 among points at or below the rate) and, where the curve spans the
rate, linearly interpolated in log-rate. Targets are those of the feature-codec issue.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from icmkit.bench.bd import bd
from icmkit.bench.results import load_curves
from icmkit.errors import IcmError

FAMILY, HEVC, MMD = "icm-dicm-lite0", "hevc444", "icm-mmd"
# Published gaps to the uncompressed ResNet-50 (76.13 %), ../shared/notes/FIELD.md: (bpp, top-1) points.
PUBLISHED = {
    "Duan & Zhu, PCS 2022 (ResNet-50)": [(0.093, 67.9), (0.140, 70.6), (0.225, 71.5), (0.315, 73.0), (0.435, 73.5)],
    "Entropic Student, WACV 2022 (ResNet-50)": [(0.22, 68.0), (0.37, 72.0), (0.59, 74.0)],
}
PUBLISHED_UNCOMPRESSED = 76.13
GAP_RATES = (0.1, 0.15, 0.3)
CROP_PIXELS = 256 * 256
CLASSES = 1000


def curve(folder: Path, codec: str, metric: str = "top1"):
    found = {c.name: c for c in load_curves(folder / "summary.csv", metric)}
    if codec not in found:
        raise IcmError(f"{folder}/summary.csv has no {codec} curve with {metric}")
    return found[codec]


def compare(folder: Path, test: str, anchor: str) -> dict:
    a, t = curve(folder, anchor), curve(folder, test)
    return {
        "test": test,
        "anchor": anchor,
        **bd(a.rates, a.metric, t.rates, t.metric, method="pchip", monotonic=True).as_dict(),
    }


def reference_top1(folder: Path) -> dict[str, float]:
    with open(folder / "summary.csv", newline="") as handle:
        return {r["codec"]: float(r["top1"]) for r in csv.DictReader(handle) if r["codec"].startswith("(")}


def top1_at(points: list[tuple[float, float]], rate: float) -> tuple[float | None, float | None]:
    """(best measured top-1 at or below ``rate``, top-1 interpolated at ``rate`` in log-rate or None)."""
    below = [t for r, t in points if r <= rate]
    inside = None
    for (r0, t0), (r1, t1) in zip(points, points[1:]):
        if r0 <= rate <= r1:
            inside = t0 + (t1 - t0) * (math.log(rate) - math.log(r0)) / (math.log(r1) - math.log(r0))
    return (max(below) if below else None), inside


def verdict(value: float, target: float) -> str:
    if math.isnan(value):
        return "no overlap"
    return f"{'met' if value <= target else 'NOT met'} (target ≤ {target:+.0f} %)"


def bd_line(label: str, r: dict, target: float | None = None) -> str:
    if math.isnan(r["bd_rate_pct"]):
        return f"{label}: no BD figure ({r.get('note') or 'no overlap'})"
    check = "" if target is None else f" — {verdict(r['bd_rate_pct'], target)}"
    return (
        f"{label}: BD-rate {r['bd_rate_pct']:+.1f} %, BD-top-1 {r['bd_metric']:+.2f} pp, overlap "
        f"{r['overlap_lo']:.3g}–{r['overlap_hi']:.3g} (top-1 %), {r['points']} points{check}"
    )


def gap_table(points: list[tuple[float, float]], uncompressed: float) -> dict:
    """Points below the uncompressed model at GAP_RATES: the family's (interpolated in log-rate where its curve
    spans the rate, else the best measured point at or below it) beside the published systems'."""
    rows = {}
    for name, curve_points, reference in (
        ("this family (EfficientNet-Lite0, imagenet-dev200)", points, uncompressed),
        *((label, published, PUBLISHED_UNCOMPRESSED) for label, published in PUBLISHED.items()),
    ):
        gaps = {}
        for rate in GAP_RATES:
            best, inside = top1_at(sorted(curve_points), rate)
            value = inside if inside is not None else best
            gaps[str(rate)] = None if value is None else round(reference - value, 2)
        rows[name] = gaps
    print("points below the uncompressed model at " + " / ".join(f"{r} bpp" for r in GAP_RATES) + ":")
    for name, gaps in rows.items():
        print(f"  {name}: " + " / ".join("—" if g is None else f"{g:.1f}" for g in gaps.values()))
    return rows


def report(args) -> dict:
    folder = args.bench
    family_name = args.family
    out: dict = {"bench": str(folder), "family": family_name, "baseline": args.baseline}
    print(f"# {family_name} on {folder} (EfficientNet-Lite0 top-1; pchip, isotonic first)")
    benched = {c.name for c in load_curves(folder / "summary.csv", "top1")}
    anchors = [(HEVC, args.hevc_target)] + ([(MMD, -50.0)] if MMD in benched else [])
    anchors += [(args.baseline, -25.0)] if args.baseline else []
    for anchor, target in anchors:
        r = compare(folder, family_name, anchor)
        out[f"vs_{anchor}"] = r
        print(bd_line(f"vs {anchor}", r, target))
    refs = reference_top1(folder)
    image_top1 = next((v for k, v in refs.items() if "image" in k), float("nan"))
    features_top1 = next((v for k, v in refs.items() if "features" in k), float("nan"))
    out["uncompressed"] = {"image_top1": image_top1, "features_top1": features_top1}
    print(f"uncompressed: image {image_top1:.1f} %, features (tail on the 28×28 window) {features_top1:.1f} %")
    family = curve(folder, family_name)
    points = sorted(zip(family.rates, family.metric))
    print("points: " + ", ".join(f"{r:.4f} bpp → {t:.1f} %" for r, t in points))
    for rate, allowed in ((0.3, 3.0), (0.15, 6.0)):
        best, inside = top1_at(points, rate)
        gap = None if best is None else image_top1 - best
        out[f"at_{rate}"] = {"best_measured": best, "interpolated": inside, "gap_pp": gap}
        shown = (
            "no point" if best is None else f"{best:.1f} % (gap {gap:.1f} pp, {'met' if gap <= allowed else 'NOT met'}"
        )
        print(
            f"≤ {rate} bpp: best {shown}, target ≤ {allowed:.0f} pp)"
            + ("" if inside is None else f"; interpolated at {rate}: {inside:.1f} %")
        )
    best, _ = top1_at(points, LOW_RATE)
    out[f"at_{LOW_RATE}"] = {"best_measured": best}
    verdict_low = "no point" if best is None else f"{best:.1f} % ({'met' if best >= LOW_RATE_TOP1 else 'NOT met'}"
    print(f"≤ {LOW_RATE} bpp: best {verdict_low}, target ≥ {LOW_RATE_TOP1:.0f} %)")
    out["gaps"] = gap_table(points, image_top1)
    lowest_bits = points[0][0] * CROP_PIXELS
    limit = math.log2(CLASSES)
    out["physical_limit"] = {"bits_per_image_limit": limit, "lowest_point_bits": lowest_bits}
    print(
        f"physical limit: log2({CLASSES}) = {limit:.2f} bits per image ({limit / CROP_PIXELS:.6f} bpp); the lowest "
        f"point spends {lowest_bits:.0f} bits ({lowest_bits / limit:.0f}× the limit)"
    )
    if args.ablations:
        out["ablations"] = []
        print(f"# ablations at equal training budget ({args.ablations}): BD-rate vs the full model")
        anchor = f"dicm-{args.ablation_anchor}"
        for codec in sorted({c.name for c in load_curves(args.ablations / "summary.csv", "top1")} - {anchor}):
            r = compare(args.ablations, codec, anchor)
            out["ablations"].append(r)
            print(bd_line(f"{codec} vs {anchor}", r))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


ABLATION_FULL = "dicm-full"
LOW_RATE, LOW_RATE_TOP1 = 0.04, 60.0


def ablate(args) -> None:
    from icmkit.bench.benchmark import BenchOptions, run_bench
    from icmkit.codecs import register_codec
    from icmkit.codecs.feature import FeatureCodec

    names = []
    for item in args.runs:
        label, _, run = item.partition("=")
        weights = Path(run) if run.endswith(".safetensors") else Path(run) / "final.safetensors"
        if not weights.exists():
            raise SystemExit(f"{weights}: no final weights (is the run finished?)")
        register_codec(FeatureCodec.from_weights_file(weights, name=f"dicm-{label}"))
        names.append(f"dicm-{label}")
    anchor = f"dicm-{args.anchor}"
    qualities = f":{args.qualities}" if args.qualities else ""
    if anchor not in names:
        raise SystemExit(f"one run must be labelled {args.anchor}= (the --anchor)")
    # One process: the codecs registered here are not visible to worker processes.
    codecs = ",".join([name + qualities for name in names] + args.with_codecs)
    options = BenchOptions(out=args.out, data=args.data, codecs=codecs, anchor=anchor, workers=1, limit=args.limit)
    outcome = run_bench(options)
    print(f"{outcome.results}: {len(outcome.summary)} summary rows")


def compare_command(args) -> dict:
    result = {**compare(args.bench, args.test, args.anchor), "bench": args.bench.name, "curves": {}}
    for codec in (args.test, args.anchor):
        found = curve(args.bench, codec)
        result["curves"][codec] = [[round(r, 4), t] for r, t in sorted(zip(found.rates, found.metric))]
    print(bd_line(f"{args.test} vs {args.anchor}", result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="print the evidence from bench folders")
    rep.add_argument("bench", type=Path, help="icm bench folder with icm-dicm-lite0, hevc444 and icm-mmd")
    rep.add_argument("--ablations", type=Path, help="folder written by the ablate command")
    rep.add_argument("--ablation-anchor", default="full", help="the ablations' reference label (default: full)")
    rep.add_argument("--family", default=FAMILY, help=f"the codec the figures are for (default: {FAMILY})")
    rep.add_argument("--baseline", help="also BD against this codec (the family it replaces; target ≤ −25 %%)")
    rep.add_argument("--hevc-target", type=float, default=-70.0, help="BD-rate target vs HEVC-444, %% (default −70)")
    rep.add_argument("--json")
    abl = sub.add_parser("ablate", help="bench the ablation runs' weights")
    abl.add_argument("--data", type=Path, required=True)
    abl.add_argument("--out", type=Path, required=True)
    abl.add_argument("--anchor", default="full", help="the label the others are compared with (default: full)")
    abl.add_argument("--with", dest="with_codecs", action="append", default=[], help="also bench this codec")
    abl.add_argument("--qualities", help="the runs' qualities, comma-separated (default: all)")
    abl.add_argument("--limit", type=int, help="the first N images only (a quicker comparison)")
    abl.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR|WEIGHTS")
    cmp = sub.add_parser("compare", help="one BD figure between two codecs of a bench folder")
    cmp.add_argument("bench", type=Path)
    cmp.add_argument("test")
    cmp.add_argument("anchor")
    cmp.add_argument("--json")
    args = parser.parse_args()
    try:
        {"report": report, "ablate": ablate, "compare": compare_command}[args.command](args)
    except IcmError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
