"""Ship a trained variable-rate run as a zoo family: one slim weights file and its table.

    python scripts/publish_family.py icm-mse ~/.cache/icmkit-runs/pixel-v2/icm-mse --bench bench/dev200-v2 \
        [--bench-model lite1=bench/dev200-v2-lite1 ...] [--as-run "..."]
    python scripts/publish_family.py icm-dicm-lite0 ~/.cache/icmkit-runs/dicm-v2 --bench bench/dev200-dicm
    python scripts/publish_family.py icm-mmd --metrics-only --bench bench/v2-lite0 --bench-model lite1=bench/v2-lite1

The run's ``final.safetensors`` (or, while it still trains, its latest checkpoint) is finalised and written
slim (:func:`icmkit.weights.save_weights` with ``slim=True``: no float twins of the integer networks,
float16 transforms) to ``src/icmkit/zoo/weights/<file>``; machine paths are removed from its metadata.
``src/icmkit/zoo/<family>.json`` gets one row per trained rate point (all naming the same file, with its
SHA-256) with λ, β, steps, data, the exact command and the dev figures measured by ``icm bench``
(``summary.csv``; ``--bench-model`` adds other classifiers' top-1).

``--metrics-only`` rewrites only the table's measurements from new benches of the shipped file (no run
needed; the weights file and its SHA-256 stay as they are). Weights are published once: a retrained model gets
a new file name (streams of the old one then fail with the clean "other weights" message); the family name
stays.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from icmkit.fileio import atomic_write
from icmkit.train.loop import run_weights
from icmkit.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "icmkit" / "zoo"
EVAL = "imagenet-dev200, Resize 256 + CenterCrop 256, icm bench"
PIXEL_SHARED = ["imagenet-train500", "bsds500/train", "bsds500/val", "coco-train80/images"]
PIXEL_DATA = (
    "imagenet-train500 + bsds500 train/val + coco-train80 (980 images), native resolution, random 256² crops and "
    "flips, batch 8; trained on a 2-core CPU"
)
PIXEL_BASE = (
    "warm start (init_from) from the v1 icm-mse λ = 0.0067 point, a single-rate mean-scale hyperprior of the same "
    "widths trained for 13,500 MSE steps on 128² crops (git show a06cc70:src/icmkit/zoo/weights/"
    "icm-mse-q4.safetensors)"
)


@dataclass(frozen=True)
class Family:
    description: str
    data: str
    config: str
    weights_file: str
    shared: list[str]
    kind: str = "pixel"
    note: str = ""


FAMILIES = {
    "icm-mse": Family(
        "One variable-rate mean-scale hyperprior (N=64, M=160; gain units, continuous quality 1…7) with a two-pass "
        "checkerboard context; exact-integer hyper-synthesis and entropy parameters; trained for λ·255²·MSE + bpp.",
        PIXEL_DATA,
        "configs/icm-mse.yaml",
        "icm-mse-v2.safetensors",
        PIXEL_SHARED,
        note=PIXEL_BASE,
    ),
    "icm-mmd": Family(
        "icm-mse's architecture, data, λ grid, steps and seed with β·Σ_l w_l·MMD²(features_l(x), features_l(x̂)) "
        "added: multi-kernel MMD over EfficientNet-Lite0 stages blocks.1/2/4/6 (frozen, ImageNet weights; deeper "
        "stages weighted more) and a small logit-distillation term.",
        PIXEL_DATA,
        "configs/icm-mmd.yaml",
        "icm-mmd-v2.safetensors",
        PIXEL_SHARED,
        note=PIXEL_BASE,
    ),
    "icm-dicm-lite0": Family(
        "DICM feature codec between EfficientNet-Lite0's head (stem … blocks.2: 40 channels, stride 8) and "
        "tail: gnConv analysis/synthesis, transformer hyper-analysis, exact-integer hyper-synthesis and two-pass "
        "checkerboard context, no RE module (re_levels 0); one variable-rate model (gain units). Decodes to "
        "features for the tail; bpp over the input image's pixels.",
        "imagenet-train500 + bsds500 train/val + coco-train80 (880 images), 32 cached head-feature views per image "
        "(random 256² crops and flips after resizing the shorter side to 256), batch 8; backbone frozen; bf16 "
        "autocast, channels last; trained on a 2-core CPU",
        "configs/icm-dicm-lite0-v3.yaml",
        "icm-dicm-lite0-v3.safetensors",
        PIXEL_SHARED,
        kind="feature",
        note="feature_cache=CACHE, CACHE built first by `icm cache features --config configs/icm-dicm-lite0-v3.yaml "
        "data=… --out CACHE --views 32`",
    ),
}


def sanitised(config: dict, family: str) -> dict:
    """The training config without machine paths (run folders, absolute data and init folders)."""
    clean = dict(config)
    clean["out"] = f"runs/{family}"
    clean["data"] = [
        "../shared/data/" + p.split("/shared/data/")[-1] if "/shared/data/" in p else Path(p).name
        for p in config["data"]
    ]
    for key in ("init_from", "feature_cache", "decoded_cache", "re_from"):
        if clean.get(key):
            clean[key] = Path(clean[key]).name
    return clean


def read_summary(folder: Path, codec: str) -> dict[int, dict]:
    with open(folder / "summary.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["codec"] == codec]
    return {int(float(r["quality"])): r for r in rows if float(r["quality"]).is_integer()}


def command(name: str, family: Family, as_run: str) -> str:
    data = ",".join(f"../shared/data/{entry}" for entry in family.shared)
    text = f"python -m icmkit.train --config {family.config} data={data} out=runs/{name}"
    if family.kind == "pixel":
        text += " init_from=BASE  (= scripts/train_pixel_v2.sh; BASE: " + family.note + ")"
    else:
        text += f" {family.note}" if family.note else ""
        text += "  (= scripts/train_dicm.sh)"
    text += "; quality q is gain unit q of the one model, trained at λ = lmbdas[q − 1]"
    return text + (f"; as run: {as_run}" if as_run else "")


def metrics_of(family: Family, quality: int, measured: dict[str, dict[int, dict]]) -> dict:
    if "lite0" not in measured:
        return {}
    row = measured["lite0"].get(quality)
    if row is None:
        raise SystemExit(f"the --bench summary.csv has no q{quality} row")
    metrics = {"eval": EVAL + ("; features centre-cropped to 28×28" if family.kind == "feature" else "")}
    metrics["bpp"] = round(float(row["bpp"]), 4)
    if family.kind == "pixel":
        metrics.update(psnr=round(float(row["psnr"]), 2), ms_ssim=round(float(row["ms_ssim"]), 4))
    for model, rows in measured.items():
        if quality in rows:
            metrics[f"top1_{model}"] = round(float(rows[quality]["top1"]), 2)
    return metrics


def measurements(args) -> dict[str, dict[int, dict]]:
    name = args.bench_codec or args.family
    measured = {"lite0": read_summary(args.bench, name)} if args.bench else {}
    for item in args.bench_model:
        model_name, _, folder = item.partition("=")
        measured[model_name] = read_summary(Path(folder), name)
    return measured


def remeasure(name: str, family: Family, measured: dict[str, dict[int, dict]]) -> None:
    """New measurements in the shipped table; its files, SHA-256 and everything else unchanged."""
    if "lite0" not in measured:
        raise SystemExit("--metrics-only needs --bench (the Lite0 folder)")
    path = ZOO / f"{name}.json"
    table = json.loads(path.read_text())
    for entry in table["entries"]:
        entry["metrics"] = metrics_of(family, entry["quality"], measured)
    atomic_write(path, (json.dumps(table, indent=1, ensure_ascii=False) + "\n").encode())
    print(f"{path}: {len(table['entries'])} rate points re-measured ({', '.join(measured)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("run", type=Path, nargs="?", help="the run folder (not with --metrics-only)")
    parser.add_argument(
        "--metrics-only", action="store_true", help="only re-measure the shipped file's table (weights untouched)"
    )
    parser.add_argument(
        "--bench",
        type=Path,
        help="icm bench folder with the family (EfficientNet-Lite0); without it the table has no metrics yet "
        "(publish, bench the published family, publish again with --bench: the same tensors are written; "
        "safetensors may order the metadata differently, so the table's SHA-256 is that of the last write)",
    )
    parser.add_argument("--bench-model", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--bench-codec", help="the run's name in the bench folders (default: the family's)")
    parser.add_argument("--as-run", default="", help="how the run deviated from the config, for the zoo's command")
    args = parser.parse_args()
    name, family = args.family, FAMILIES[args.family]
    measured = measurements(args)
    if args.metrics_only:
        remeasure(name, family, measured)
        return
    if args.run is None:
        raise SystemExit("name the run folder (or pass --metrics-only)")
    model, meta = run_weights(args.run)
    config = sanitised(json.loads(meta["train_config"]), name)
    target = ZOO / "weights" / family.weights_file
    save_weights(
        model,
        target,
        {
            "lmbdas": config["lmbdas"],
            "lmbda": config["lmbda"],
            "beta": config["beta"],
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
    entries = [
        {
            "quality": quality,
            "file": target.name,
            "architecture": model.architecture,
            "kind": family.kind,
            "lmbda": lmbda,
            "beta": config["beta"],
            "steps": int(meta["steps"]),
            "data": family.data,
            "sha256": sha256,
            "command": command(name, family, args.as_run),
            "metrics": metrics_of(family, quality, measured),
        }
        for quality, lmbda in enumerate(config["lmbdas"], start=1)
    ]
    table = {"family": name, "description": family.description, "entries": entries}
    atomic_write(ZOO / f"{name}.json", (json.dumps(table, indent=1, ensure_ascii=False) + "\n").encode())
    print(f"{target} ({target.stat().st_size / 2**20:.2f} MiB, sha256 {sha256[:16]}…), {len(entries)} rate points")


if __name__ == "__main__":
    main()
