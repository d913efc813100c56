"""Rate control on a labelled image set: keep-prediction against fixed quality, and size-target accuracy.

    python benchmarks/rate_control_evidence.py --data ../shared/data/imagenet-dev200 \
        --codecs hevc444,icm-mmd,icm-dicm-lite0 --fixed lite0=bench/v2-lite0 --fixed lite1=bench/v2-lite1 \
        --fixed lite2=bench/v2-lite2 [--target-bytes 2000] [--limit N] [--json out.json]

For each codec and image (the classification protocol: Resize 256 + CenterCrop 256, bpp over the 256² coded
pixels) it runs ``--keep-prediction`` with EfficientNet-Lite0 (the smallest stream whose decoded top-1 is the
original's; an image whose decision no stream keeps gets the smallest stream) and scores the chosen stream
with Lite0 — the search's own classifier — and with Lite1 and Lite2, which the search never saw (pixel codecs;
a feature stream feeds Lite0's tail only). Against the codec's fixed-quality curves from ``icm bench`` folders
(``summary.csv``, one per classifier) it finds, by monotone interpolation in log-rate, the fixed rate that
reaches the same mean Lite0 top-1, and that rate's Lite1 / Lite2 top-1: if adaptive coding gains on Lite0 but not
on the unseen classifiers, the gain is an oracle effect. Because a per-image search for one classifier's
decision can land beyond the fixed curve (no fixed quality reaches that accuracy), it also compares every
classifier's top-1 at equal rate: the adaptive streams against the fixed curve at their mean bpp. It also
runs ``--target-bytes`` and reports the mean |achieved − target| and how many images met it, and the mean
number of encodes per search.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import icmkit
from icmkit.api import predict
from icmkit.bench.datasets import open_dataset
from icmkit.bench.protocols import resize_center_crop
from icmkit.bench.results import load_curves
from icmkit.codecs.base import CodecKind, FeatureMaps
from icmkit.ratecontrol import Target, TargetError, search

SEARCH_MODEL = "tf_efficientnet_lite0"
UNSEEN = {"lite1": "tf_efficientnet_lite1", "lite2": "tf_efficientnet_lite2"}
CROP = 256


def keep_run(codec, images, labels) -> dict:
    rows = []
    for image, label in zip(images, labels):
        result = search(
            codec,
            image,
            Target("keep", model=None if _feature(codec) else SEARCH_MODEL),
            best_effort=True,
            fallback="smallest",
        )
        decoded = codec.decode(result.data)
        row = {
            "bpp": 8 * len(result.data) / (image.shape[0] * image.shape[1]),
            "encodes": result.encodes,
            "met": result.met,
            "lite0": _top1(decoded, None if _feature(codec) else SEARCH_MODEL) == label,
        }
        if not isinstance(decoded, FeatureMaps):
            for name, model in UNSEEN.items():
                row[name] = _top1(decoded, model) == label
        rows.append(row)
    summary = {
        "images": len(rows),
        "bpp": float(np.mean([r["bpp"] for r in rows])),
        "encodes": float(np.mean([r["encodes"] for r in rows])),
        "kept": float(np.mean([r["met"] for r in rows])),
    }
    for name in ("lite0", *UNSEEN):
        if name in rows[0]:
            summary[f"top1_{name}"] = 100 * float(np.mean([r[name] for r in rows]))
    return summary


def size_run(codec, images, goal: int) -> dict:
    achieved, met, encodes = [], [], []
    for image in images:
        try:
            result = search(codec, image, Target("bytes", goal))
        except TargetError:
            result = search(codec, image, Target("bytes", goal), best_effort=True)
        achieved.append(len(result.data))
        met.append(result.met)
        encodes.append(result.encodes)
    return {
        "target_bytes": goal,
        "mean_abs_error_bytes": float(np.mean([abs(a - goal) for a in achieved])),
        "mean_bytes": float(np.mean(achieved)),
        "met": float(np.mean(met)),
        "encodes": float(np.mean(encodes)),
    }


def _feature(codec) -> bool:
    return codec.kind == CodecKind.FEATURE


def _top1(decoded, model) -> int:
    return predict(decoded, model, k=1).top_k[0].index


def fixed_equivalent(codec: str, top1: float, bpp: float, benches: dict[str, Path]) -> dict:
    """Against the codec's fixed-quality curves (monotone, linear in log-rate): the rate where the Lite0 curve
    reaches ``top1`` and the other classifiers' top-1 there; and every classifier's top-1 at the adaptive
    streams' own mean rate ``bpp`` — the comparison that still exists when the adaptive point lies beyond the
    fixed curve."""
    rate = _rate_at(_curve(benches["lite0"], codec), top1)
    out = {"fixed_bpp": rate}
    for name, folder in benches.items():
        try:
            curve = _curve(folder, codec)
        except KeyError:
            continue
        out[f"fixed_top1_{name}_at_bpp"] = _value_at(curve, bpp)
        if name != "lite0" and rate is not None:
            out[f"fixed_top1_{name}"] = _value_at(curve, rate)
    return out


def _curve(folder: Path, codec: str) -> list[tuple[float, float]]:
    curves = {c.name: c for c in load_curves(folder / "summary.csv", "top1")}
    c = curves[codec]
    points = sorted(zip(c.rates, c.metric))
    best, monotone = -math.inf, []
    for rate, value in points:  # running maximum: accuracy curves are noisy, the frontier is monotone
        best = max(best, value)
        monotone.append((rate, best))
    return monotone


def _rate_at(curve, value: float) -> float | None:
    for (r0, v0), (r1, v1) in zip(curve, curve[1:]):
        if v0 <= value <= v1 and v1 > v0:
            t = (value - v0) / (v1 - v0)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return None


def _value_at(curve, rate: float) -> float | None:
    for (r0, v0), (r1, v1) in zip(curve, curve[1:]):
        if r0 <= rate <= r1:
            t = (math.log(rate) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return v0 + t * (v1 - v0)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--codecs", default="hevc444,icm-mmd,icm-dicm-lite0")
    parser.add_argument(
        "--fixed",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="icm bench folder of the fixed-quality curves, one per classifier (lite0 first)",
    )
    parser.add_argument("--target-bytes", type=int, default=2000)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", type=Path, help="write the results here (and reuse the codecs already in it)")
    args = parser.parse_args()
    benches = {name: Path(folder) for name, folder in (item.split("=", 1) for item in args.fixed)}
    results = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    todo = [name for name in args.codecs.split(",") if name not in results]
    if todo:
        dataset = open_dataset(args.data, "classify").limit(args.limit)
        images = [resize_center_crop(icmkit.read_image(s.path), CROP) for s in dataset.samples]
        labels = [s.label for s in dataset.samples]
    for name in todo:
        codec = icmkit.get_codec(name)
        started = time.monotonic()
        keep = keep_run(codec, images, labels)
        size = size_run(codec, images, args.target_bytes)
        results[name] = {"keep_top1": keep, "size": size, "seconds": round(time.monotonic() - started, 1)}
        print(json.dumps({name: results[name]}), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    for name, result in results.items():  # the fixed-quality equivalents, from the bench folders given now
        if "lite0" in benches:
            keep = result["keep_top1"]
            keep.update(fixed_equivalent(name, keep["top1_lite0"], keep["bpp"], benches))
    print(
        "\n| codec | adaptive bpp | encodes | Lite0 top-1 | fixed bpp at that Lite0 top-1 | rate saved | "
        "Lite1 top-1 adaptive / fixed | Lite2 top-1 adaptive / fixed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        k = r["keep_top1"]
        fixed = k.get("fixed_bpp")
        unseen = [
            f"{k[f'top1_{n}']:.1f} / {k.get(f'fixed_top1_{n}', float('nan')):.1f}"
            if f"top1_{n}" in k
            else "— (features)"
            for n in UNSEEN
        ]
        equivalent = f"{fixed:.4f} | {100 * (k['bpp'] / fixed - 1):+.1f} %" if fixed else "outside the fixed curve | —"
        print(
            f"| {name} | {k['bpp']:.4f} | {k['encodes']:.2f} | {k['top1_lite0']:.1f} | {equivalent} | "
            f"{unseen[0]} | {unseen[1]} |"
        )
    print(
        "\n| codec | adaptive bpp | top-1 adaptive / fixed at that bpp: Lite0 (seen) | Lite1 (unseen) "
        "| Lite2 (unseen) |"
    )
    print("|---|---|---|---|---|")
    for name, r in results.items():
        k = r["keep_top1"]
        cells = []
        for n in ("lite0", *UNSEEN):
            fixed = k.get(f"fixed_top1_{n}_at_bpp")
            if f"top1_{n}" not in k:
                cells.append("— (features)")
            else:
                cells.append(f"{k[f'top1_{n}']:.1f} / " + ("outside the curve" if fixed is None else f"{fixed:.1f}"))
        print(f"| {name} | {k['bpp']:.4f} | {' | '.join(cells)} |")
    print("\n| codec | --target-bytes | mean achieved | mean abs error | met | encodes |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        s = r["size"]
        print(
            f"| {name} | {s['target_bytes']} | {s['mean_bytes']:.0f} | {s['mean_abs_error_bytes']:.0f} | "
            f"{100 * s['met']:.0f} % | {s['encodes']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
