"""Does `icm predict` on a feature stream agree with `icm predict` on the photo? Measured per geometry.

For each photo (at its native size, no crop by this script) and each feature-stream geometry, the photo is coded at
the codec's default quality (or ``--quality``), decoded, and the backbone's tail predicts from the decoded features;
the image path's prediction (the classifier on the photo, its own preprocessing) is the reference. Printed and
written as JSON: the share of photos whose top-1 agrees, the mean absolute gap of the top-1 probability (in
points), the mean bpp (over the photo's pixels), and one row per photo.

    python benchmarks/feature_geometry_evidence.py --data ../shared/data/imagenet-dev200 --every 10 \\
        --json docs/feature-geometry-dev200.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import icmkit
from icmkit import api
from icmkit.image import IMAGE_SUFFIXES

GEOMETRIES = ("classifier", "full")


def _codec_view(codec, geometry: str):
    return codec.for_classifier() if geometry == "classifier" else codec.for_full_image()


def measure(photos: list[Path], codec_name: str, quality) -> dict:
    codec = icmkit.get_codec(codec_name)
    quality = codec.quality.validate(quality)
    rows = []
    for number, path in enumerate(photos, 1):
        image = api.read_image(path)
        reference = api.predict(image, k=1)
        row = {
            "file": path.name,
            "size": f"{image.shape[1]}x{image.shape[0]}",
            "image_top1": reference.top_k[0].label,
            "image_probability": round(reference.top_k[0].probability, 4),
        }
        for geometry in GEOMETRIES:
            data = _codec_view(codec, geometry).encode(image, quality)
            decoded = api.predict(data, k=1)
            index = reference.top_k[0].index
            row[geometry] = {
                "bpp": round(8 * len(data) / (image.shape[0] * image.shape[1]), 4),
                "top1": decoded.top_k[0].label,
                "agrees": decoded.top_k[0].index == index,
                "probability": round(decoded.top_k[0].probability, 4),
                "gap_points": round(100 * abs(decoded.top_k[0].probability - reference.top_k[0].probability), 2),
            }
        rows.append(row)
        print(f"[{number}/{len(photos)}] {path.name}", file=sys.stderr)
    summary = {}
    for geometry in GEOMETRIES:
        cells = [row[geometry] for row in rows]
        summary[geometry] = {
            "top1_agreement_percent": round(100 * float(np.mean([c["agrees"] for c in cells])), 1),
            "mean_probability_gap_points": round(float(np.mean([c["gap_points"] for c in cells])), 2),
            "mean_bpp": round(float(np.mean([c["bpp"] for c in cells])), 4),
        }
    return {"codec": codec_name, "quality": quality, "photos": len(rows), "summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of photos")
    parser.add_argument("--every", type=int, default=10, help="take every N-th photo of the sorted folder")
    parser.add_argument("--codec", default="icm-dicm-lite0")
    parser.add_argument("--quality", default=None, help="default: the codec's default quality")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    photos = sorted(p for p in args.data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:: args.every]
    result = measure(photos, args.codec, args.quality)
    result["data"] = f"{args.data.name} (every {args.every}th photo, native size)"
    for geometry, figures in result["summary"].items():
        print(
            f"{geometry:>10}: top-1 agrees on {figures['top1_agreement_percent']} % of {result['photos']} photos, "
            f"top-1 probability within {figures['mean_probability_gap_points']} points on average, "
            f"{figures['mean_bpp']} bpp"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
