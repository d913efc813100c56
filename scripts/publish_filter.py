"""Ship trained restoration filters as a zoo family (``hevc444-mmd`` → codec ``hevc444+mmd``): slim weights files
and their table.

    python scripts/publish_filter.py hevc444-mmd RUN_BAND1 RUN_BAND2 RUN_BAND3 --version 2 \
        --config configs/restore-hevc444-small.yaml --label bands --evidence docs/restoration-evidence-dev200.json
    python scripts/publish_filter.py jpeg-mmd RUN --config configs/restore-jpeg.yaml --evidence …

Each run's ``final.safetensors`` (or, while it still trains, its latest checkpoint) is written with its float32
weights as they were measured (float16 would change the restored pixels the evidence measured) to
``src/icmkit/zoo/weights/<family>-v<version>.safetensors`` (one run) or ``…-v<version>-band<i>.safetensors`` (one
run per quality band, low to high: the codec picks the filter whose band holds a stream's quality) with the machine
paths removed from its metadata; ``src/icmkit/zoo/<family>.json`` gets a row per file with λ, β, steps, data, the
exact command, the SHA-256, the band and the BD figures of ``benchmarks/restoration_evidence.py report --json``
(the rows of ``BASE+LABEL`` against the base codec, on imagenet-dev200; ``--label`` is the name the filters were
measured under). Weights are published once: a retrained filter gets a new version; the table names only the
newest (streams are the base codec's, so no stream needs an earlier filter).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from icmkit.fileio import atomic_write
from icmkit.train.loop import run_weights
from icmkit.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "icmkit" / "zoo"
DATA = (
    "imagenet-train500 + bsds500 train + coco-train80 (780 images), native resolution: a decoded-crop cache of 4 "
    "random 256² crops per image, each coded at 3 qualities of the training grid (icm cache decoded); random "
    "flips, batch 4; trained on a 2-core CPU"
)
FAMILIES = {  # family → (base codec, what the filter reads from the stream, what the files stay)
    "hevc444-mmd": (
        "hevc444",
        "HEVC-444 (x265, BPG settings)",
        "BPG's q read from the stream",
        "plain hevc444 streams",
    ),
    "jpeg-mmd": ("jpeg", "JPEG 4:2:0", "the quality estimated from the file's tables", "plain JPEG files"),
}


def describe(family: str, config: dict, banded: bool = False) -> str:
    _, codec, condition, files = FAMILIES[family]
    scale, width, blocks, edge = (config[k] for k in ("scale", "width", "blocks", "edge_kernel"))
    which = "Restoration filters, one per band of qualities," if banded else "A restoration filter"
    return (
        f"{which} at the receiver of {codec}: a residual CNN at 1/{scale} resolution (pixel unshuffle "
        f"{scale}, {edge}×{edge} head and tail, {blocks} blocks of {width} channels) conditioned on {condition} "
        "(FiLM), trained with λ·255²·MSE + β·(MMD² of EfficientNet-Lite0 features + logit distillation). "
        f"The files are {files}."
    )


def sanitised(config: dict, base: str) -> dict:
    clean = dict(config)
    clean["out"] = f"runs/restore-{base}"
    clean["decoded_cache"] = f"~/.cache/icmkit-runs/decoded-crops/{base}"
    clean["data"] = []
    return clean


def metrics(evidence: Path | None, base: str, label: str) -> dict:
    if evidence is None:
        return {}
    payload = json.loads(evidence.read_text())
    found = {"eval": f"{payload['data']}, Resize 256 + CenterCrop 256, benchmarks/restoration_evidence.py"}
    for record in payload["bd"]:
        if record["test"] == f"{base}+{label}" and record["anchor"] == base:
            key = "bd_psnr_db" if record["metric"] == "psnr" else None
            if record["metric"].startswith("top1_"):
                key = f"bd_rate_{record['metric']}_pct"
            if key == "bd_psnr_db":
                found[key] = round(record["bd_metric"], 3)
            elif key:
                found[key] = round(record["bd_rate_pct"], 1)
    return found


def publish(family: str, run: Path, target: Path, index: int, args) -> tuple[dict, object]:
    """Write one run's filter to ``target``; its table row (``quality`` is the band's index, 1 for one filter)."""
    base = FAMILIES[family][0]
    model, meta = run_weights(run)
    if model.base != base:
        raise SystemExit(f"{run}: a filter behind {model.base}, not {base}")
    config = sanitised(json.loads(meta["train_config"]), base)
    save_weights(
        model,
        target,
        {
            "lmbda": config["lmbda"],
            "beta": config["beta"],
            "steps": int(meta["steps"]),
            "crop": config["crop"],
            "batch_size": config["batch_size"],
            "decoded_cache": json.loads(meta["decoded_cache"]),
            "git_commit": meta.get("git_commit"),
            "train_config": json.dumps(config, sort_keys=True),
        },
    )
    cache = (
        f"icm cache decoded --codec {base} --data ../shared/data/imagenet-train500 --data ../shared/data/bsds500/train "
        f"--data ../shared/data/coco-train80/images --out ~/.cache/icmkit-runs/decoded-crops/{base}"
    )
    recipe = args.config or f"configs/restore-{base}.yaml"
    band = config.get("quality_band") or []
    overrides = f" quality_band={','.join(f'{v:g}' for v in band)} steps={int(meta['steps'])}" if band else ""
    command = f"python -m icmkit.train --config {recipe} out=runs/restore-{base}{overrides}  (on the cache {cache})"
    found = metrics(args.evidence, base, args.label)
    found["quality_band"] = [model.config["quality_lo"], model.config["quality_hi"]]
    entry = {
        "quality": index,
        "file": target.name,
        "architecture": model.architecture,
        "kind": "pixel",
        "lmbda": config["lmbda"],
        "beta": config["beta"],
        "steps": int(meta["steps"]),
        "data": DATA,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "command": command + (f"; as run: {args.as_run}" if args.as_run else ""),
        "metrics": found,
    }
    return entry, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("runs", type=Path, nargs="+", help="one run folder, or one per quality band (low to high)")
    parser.add_argument("--version", type=int, default=1, help="the file's version (a new one for each retraining)")
    parser.add_argument("--config", help="the recipe's config file (default configs/restore-BASE.yaml)")
    parser.add_argument("--label", default="mmd", help="the filter's name in the evidence run (BASE+LABEL)")
    parser.add_argument("--evidence", type=Path)
    parser.add_argument("--as-run", default="")
    args = parser.parse_args()
    banded = len(args.runs) > 1
    targets = [
        ZOO / "weights" / f"{args.family}-v{args.version}{f'-band{i}' if banded else ''}.safetensors"
        for i in range(1, len(args.runs) + 1)
    ]
    for target in targets:
        if target.exists():
            raise SystemExit(f"{target} exists: weights are published once (give a new --version)")
    rows = [publish(args.family, run, target, i, args) for i, (run, target) in enumerate(zip(args.runs, targets), 1)]
    entries, model = [row for row, _ in rows], rows[0][1]
    table = {"family": args.family, "description": describe(args.family, model.config, banded), "entries": entries}
    atomic_write(ZOO / f"{args.family}.json", (json.dumps(table, indent=1, ensure_ascii=False) + "\n").encode())
    for target in targets:
        print(f"{target} ({target.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
