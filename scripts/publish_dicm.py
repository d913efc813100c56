"""Ship a trained icm-dicm-lite0 run: one slim variable-rate weights file and its zoo table.

    python scripts/publish_dicm.py ~/.cache/icmkit-runs/icm-dicm-lite0 --bench bench/dev200-dicm \
        [--bench-model lite1=bench/dev200-dicm-lite1 ...]

The run's ``final.safetensors`` (or, while it still trains, its latest checkpoint) is finalised and written
slim (:func:`icmkit.weights.save_weights` with ``slim=True``: no float twins of the integer networks,
float16 transforms) to ``src/icmkit/zoo/weights/`` (``WEIGHTS_FILE``); machine paths are removed
from its metadata. ``src/icmkit/zoo/icm-dicm-lite0.json`` gets one row per quality (all naming the same
file, with its SHA-256) with λ, steps, data, the exact command and the dev figures measured by ``icm bench``
(``summary.csv``: bpp and top-1 per quality; ``--bench-model`` adds other classifiers' top-1).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import tempfile
from pathlib import Path

from icmkit.fileio import atomic_write
from icmkit.train.loop import export_checkpoint
from icmkit.weights import load_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "icmkit" / "zoo"
FAMILY = "icm-dicm-lite0"
DESCRIPTION = (
    "DICM feature codec between EfficientNet-Lite0's head (stem … blocks.2: 40 channels, stride 8) and "
    "tail: RE module (Conv2Former), gnConv analysis/synthesis, transformer hyper-analysis, exact-integer "
    "hyper-synthesis and two-pass checkerboard context; one variable-rate model (gain units). Decodes "
    "to features for the tail; bpp over the input image's pixels."
)
DATA = (
    "imagenet-train500 + bsds500 train/val + coco-train80 (980 images), shorter side resized to 256, random "
    "256² crops and flips, batch 8; backbone frozen; trained on a 2-core CPU"
)
SHARED = ["imagenet-train500", "bsds500/train", "bsds500/val", "coco-train80/images"]
# Weights are published once: a retrained model gets a new file name (streams of the old one then fail
# with the clean "other weights" message), the family name stays.
WEIGHTS_FILE = f"{FAMILY}-v2.safetensors"
COMMAND = (
    "python -m icmkit.train --config configs/icm-dicm-lite0.yaml data="
    + ",".join(f"../shared/data/{name}" for name in SHARED)
    + f" out=runs/{FAMILY}"
)


def sanitised(config: dict) -> dict:
    """The training config without machine paths (run folders, absolute data folders)."""
    clean = dict(config)
    clean["out"] = f"runs/{FAMILY}"
    clean["data"] = [
        "../shared/data/" + p.split("/shared/data/")[-1] if "/shared/data/" in p else Path(p).name
        for p in config["data"]
    ]
    return clean


def read_summary(folder: Path, codec: str) -> dict[int, dict]:
    with open(folder / "summary.csv", newline="") as handle:
        return {int(r["quality"]): r for r in csv.DictReader(handle) if r["codec"] == codec}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument(
        "--bench",
        type=Path,
        help="icm bench folder with the family (EfficientNet-Lite0); without it the table has no metrics yet "
        "(publish, bench the published family, publish again with --bench: the same tensors are written; "
        "safetensors may order the metadata differently, so the table's SHA-256 is that of the last write)",
    )
    parser.add_argument("--bench-model", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--as-run", default="", help="how the run deviated from the config, for the zoo's command")
    args = parser.parse_args()
    final = args.run / "final.safetensors"
    with tempfile.TemporaryDirectory() as folder:
        if not final.exists():
            final = Path(folder) / "latest.safetensors"
            export_checkpoint(args.run, final)
        model, meta = load_weights(final)
    config = sanitised(json.loads(meta["train_config"]))
    target = ZOO / "weights" / WEIGHTS_FILE
    save_weights(
        model,
        target,
        {
            "lmbdas": config["lmbdas"],
            "lmbda": config["lmbda"],
            "steps": int(meta["steps"]),
            "crop": config["crop"],
            "batch_size": config["batch_size"],
            "data": config["data"],
            "git_commit": meta.get("git_commit"),
            "train_config": json.dumps(config, sort_keys=True),
        },
        slim=True,
    )
    sha256 = hashlib.sha256(target.read_bytes()).hexdigest()
    measured = {"lite0": read_summary(args.bench, FAMILY)} if args.bench else {}
    for item in args.bench_model:
        name, _, folder = item.partition("=")
        measured[name] = read_summary(Path(folder), FAMILY)
    entries = []
    for quality, lmbda in enumerate(config["lmbdas"], start=1):
        metrics = {}
        if args.bench:
            row = measured["lite0"].get(quality)
            if row is None:
                raise SystemExit(f"{args.bench}/summary.csv has no {FAMILY} q{quality} row")
            metrics = {
                "eval": "imagenet-dev200, Resize 256 + CenterCrop 256, icm bench; features centre-cropped to 28×28",
                "bpp": round(float(row["bpp"]), 4),
            }
        for name, rows in measured.items():
            if quality in rows:
                metrics[f"top1_{name}"] = round(float(rows[quality]["top1"]), 2)
        entries.append(
            {
                "quality": quality,
                "file": target.name,
                "architecture": model.architecture,
                "kind": "feature",
                "lmbda": lmbda,
                "steps": int(meta["steps"]),
                "data": DATA,
                "sha256": sha256,
                "command": f"{COMMAND}  (= scripts/train_dicm.sh; quality q is gain unit q of the one model, "
                f"trained at λ = lmbdas[q − 1]{'; as run: ' + args.as_run if args.as_run else ''})",
                "metrics": metrics,
            }
        )
    table = {"family": FAMILY, "description": DESCRIPTION, "entries": entries}
    atomic_write(ZOO / f"{FAMILY}.json", (json.dumps(table, indent=1, ensure_ascii=False) + "\n").encode())
    print(f"{target} ({target.stat().st_size / 2**20:.2f} MiB, sha256 {sha256[:16]}…), {len(entries)} rate points")


if __name__ == "__main__":
    main()
