"""Copy trained rate points into the package zoo and write the family tables (``src/icmkit/zoo/<family>.json``).

    python scripts/publish_zoo.py runs/zoo --bench bench/dev200-lite0 [--bench-model lite1=bench/dev200-lite1 ...]

Each shipped file is the run's ``final.safetensors`` with its metadata completed: ``steps`` becomes the total
number of optimisation steps behind the weights (base + trunk + branch, as ``scripts/train_families.sh`` makes
them) and ``run_steps`` keeps the last run's own count. The measured figures come from ``icm bench`` folders
on the dev images (``summary.csv``); the command in each entry is the exact chain that made the weights.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from safetensors.torch import load_file, save

from icmkit.fileio import atomic_write
from icmkit.weights import read_metadata, weights_digest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "icmkit" / "zoo"
BASE_STEPS = 13000
BASE_WEIGHTS = "runs/zoo/base/icm-mse-q3.safetensors"  # where scripts/train_families.sh expects the base
BASE_COMMAND = (
    "python -m icmkit.train out=runs/zoo/base-run lmbda=0.0067 crop=128 batch_size=8 steps=13000 lr=0.0005 "
    f"lr_drop_at=0.9 threads=2 log_every=100 checkpoint_every=250 && cp runs/zoo/base-run/final.safetensors "
    f"{BASE_WEIGHTS}"
)
# The base that was shipped did not run this command straight through; say so beside every command.
BASE_AS_RUN = (
    "as run, the base's steps 0–1500 used lr=0.0002 and plain-clamp scale bounds, then it resumed with "
    "the command above; the exact base is git show bc3aa15:src/icmkit/zoo/weights/icm-mse-q3.safetensors"
)
DESCRIPTIONS = {
    "icm-mse": "Mean-scale hyperprior (N=64, M=160) trained for λ·255²·MSE + bpp only.",
    "icm-mmd": "icm-mse's architecture and training budget with β·Σ_l MMD²(features_l(x), features_l(x̂)) added: "
    "multi-kernel MMD over EfficientNet-Lite0 stage outputs blocks.1/2/4/6 (frozen, ImageNet weights).",
}
DATA = (
    "imagenet-train500 + bsds500 train/val (800 images), random 128² crops and flips, batch 8; trained on a 2-core CPU"
)


def run_command(meta: dict) -> str:
    """The ``python -m icmkit.train`` line that reproduces one run, from the config its weights record."""
    config = json.loads(meta["train_config"])
    recipe = "icm-mse" if config["beta"] == 0 else "icm-mmd"
    return (
        f"python -m icmkit.train --config configs/{recipe}.yaml out={config['out']} lmbda={config['lmbda']} "
        f"init_from={config['init_from']} steps={config['steps']} lr={config['lr']} "
        f"lr_drop_at={config['lr_drop_at']} seed={config['seed']} threads={config['threads']}"
    )


def train_command(meta: dict, trunk_meta: dict | None) -> str:
    parts = [BASE_COMMAND, *([run_command(trunk_meta)] if trunk_meta else []), run_command(meta)]
    return " && ".join(parts) + f"  ({BASE_AS_RUN}; the rest: scripts/train_families.sh)"


def summary_rows(folder: Path, family: str) -> dict[int, dict]:
    if not (folder / "summary.csv").is_file():
        return {}
    with open(folder / "summary.csv", newline="") as handle:
        return {int(r["quality"]): r for r in csv.DictReader(handle) if r["codec"] == family}


def publish(runs: Path, family: str, benches: dict[str, Path]) -> list[dict]:
    """Ship every finished run of ``family``; qualities number the runs 1…N by increasing λ."""
    finished = sorted(
        (float(meta["lmbda"]), run.name, meta)
        for run in runs.glob(f"{family}-q*")
        if (run / "final.safetensors").is_file()
        for meta in [read_metadata(run / "final.safetensors")]
    )
    measured = {model: summary_rows(folder, family) for model, folder in benches.items()}
    entries = []
    for quality, (_, run_name, meta) in enumerate(finished, start=1):
        config = json.loads(meta["train_config"])
        trunk_meta = read_metadata(config["init_from"]) if "trunk-q" in config["init_from"] else None
        total = BASE_STEPS + (int(trunk_meta["steps"]) if trunk_meta else 0) + int(meta["steps"])
        shipped = {**meta, "steps": str(total), "run_steps": meta["steps"], "family": family, "quality": str(quality)}
        name = f"{family}-q{quality}.safetensors"
        tensors, target = load_file(str(runs / run_name / "final.safetensors")), ZOO / "weights" / name
        # safetensors orders header metadata arbitrarily: rewrite only what changed, so git sees no churn.
        if not (
            target.is_file()
            and read_metadata(target) == shipped
            and weights_digest(load_file(str(target))) == weights_digest(tensors)
        ):
            atomic_write(target, save(tensors, metadata=shipped))
        metrics = {"eval": "imagenet-dev200, Resize 256 + CenterCrop 256, icm bench"}
        for model, rows in measured.items():
            row = rows.get(quality)
            if row is None:
                continue
            if model == "lite0":
                metrics.update(
                    bpp=round(float(row["bpp"]), 4),
                    psnr=round(float(row["psnr"]), 2),
                    ms_ssim=round(float(row["ms_ssim"]), 4),
                )
            metrics[f"top1_{model}"] = round(float(row["top1"]), 1)
        entries.append(
            {
                "quality": quality,
                "file": name,
                "architecture": meta["architecture"],
                "lmbda": float(meta["lmbda"]),
                "beta": float(meta["beta"]),
                "steps": total,
                "data": DATA,
                "command": train_command(meta, trunk_meta),
                "metrics": metrics,
            }
        )
    return entries


def markdown(tables: list[dict]) -> str:
    """The README's zoo table: one row per rate point of every family."""
    lines = [
        "| codec | quality | λ | β | steps | bpp | PSNR (dB) | MS-SSIM | top-1 Lite0 | top-1 Lite1 | top-1 Lite2 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for table in tables:
        for e in table["entries"]:
            m = e["metrics"]
            formats = {
                "bpp": ".3f",
                "psnr": ".2f",
                "ms_ssim": ".4f",
                "top1_lite0": ".1f",
                "top1_lite1": ".1f",
                "top1_lite2": ".1f",
            }
            cells = [
                table["family"],
                e["quality"],
                e["lmbda"],
                e["beta"],
                f"{e['steps']:,}",
                *(format(m[k], spec) if k in m else "—" for k, spec in formats.items()),
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("--bench", type=Path, required=True, help="icm bench folder scored with EfficientNet-Lite0")
    parser.add_argument("--bench-model", action="append", default=[], help="NAME=FOLDER for other classifiers")
    parser.add_argument("--families", default="icm-mse,icm-mmd")
    parser.add_argument("--markdown", action="store_true", help="also print the README's table of the families")
    args = parser.parse_args()
    benches = {"lite0": args.bench, **dict(item.split("=", 1) for item in args.bench_model)}
    benches = {k: Path(v) for k, v in benches.items()}
    tables = []
    for family in args.families.split(","):
        entries = publish(args.runs, family, benches)
        for stale in (ZOO / "weights").glob(f"{family}-q*.safetensors"):
            if stale.name not in {e["file"] for e in entries}:
                stale.unlink()
        table = {"family": family, "description": DESCRIPTIONS[family], "entries": entries}
        atomic_write(ZOO / f"{family}.json", (json.dumps(table, indent=2, ensure_ascii=False) + "\n").encode())
        print(f"{family}: {len(entries)} rate points")
        tables.append(table)
    if args.markdown:
        print(markdown(tables))


if __name__ == "__main__":
    main()
