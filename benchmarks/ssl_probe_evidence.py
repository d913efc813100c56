"""What DICM's self-supervised stages buy at this machine's scale: linear-probe top-1 against bpp.

    python benchmarks/ssl_probe_evidence.py run --out bench/ssl-probe [--data ../shared/data] \
        [--runs ~/.cache/icmkit-runs/ssl]
    python benchmarks/ssl_probe_evidence.py report bench/ssl-probe [--json docs/ssl-probe-dev200.json]

``run`` calls ``icm probe`` (the MoCo linear-classification protocol on frozen decoded features) for
  * ``frozen``: the shipped frozen-backbone family ``icm-dicm-lite0`` (the feature-codec issue's codec);
  * ``ssl``: stage 4 of ``scripts/train_ssl_schedule.sh`` (RUNS/ssl-codec-lite0/final.safetensors), whose tail
    is the stage-3 backbone (RUNS/ssl-joint-lite0/final.safetensors);
  * the uncompressed references: ImageNet Lite0, the stage-1 (MoCo) backbone and the stage-3 backbone.
and ``report`` prints the table, the BD-rate of the SSL codec against the frozen one on probe top-1 (pchip over
the overlap with an isotonic fit first, as ``icm bench``), and writes the figures as JSON.

Why coarse labels: a linear probe needs the same classes in its training and evaluation sets, and
imagenet-train500 / imagenet-dev200 share none (one image per class, disjoint classes). ImageNet's first 398
classes are animals, ordered by WordNet: they fall into contiguous ranges of one animal group each
(:data:`ANIMAL_GROUPS`, checked to partition 0…397 below), so every animal image of both sets gets a group
label. ``run`` writes those labelled views (symbolic links and a ``labels.csv`` per set; other images are left
out) and probes them: about 200 training and 80 evaluation images in 10 groups.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from icmkit.bench.bd import bd

# ImageNet class-index ranges (inclusive) of each animal group, read off the WordNet order of the class list
# (torchvision's ``ResNet50_Weights.IMAGENET1K_V1.meta["categories"]``); every index below 398 is in one group.
ANIMAL_GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "fish": ((0, 6), (389, 397)),
    "bird": ((7, 24), (80, 100), (127, 146)),
    "amphibian or reptile": ((25, 68),),
    "spider, crustacean, trilobite": ((69, 79), (118, 126)),
    "mollusc, cnidarian, worm, echinoderm": ((107, 117), (327, 329)),
    "insect": ((300, 326),),
    "domestic dog": ((151, 268),),
    "wild canid, cat, bear, mustelid": ((269, 299), (356, 362), (387, 388)),
    "primate": ((365, 384),),
    "other mammal": ((101, 106), (147, 150), (330, 355), (363, 364), (385, 386)),
}
ANIMAL_CLASSES = 398
_GROUP_OF = {
    i: g for g, (name, ranges) in enumerate(ANIMAL_GROUPS.items()) for lo, hi in ranges for i in range(lo, hi + 1)
}
assert sorted(_GROUP_OF) == list(range(ANIMAL_CLASSES)), "the animal groups must partition ImageNet's classes 0…397"
assert sum(hi - lo + 1 for ranges in ANIMAL_GROUPS.values() for lo, hi in ranges) == ANIMAL_CLASSES, "groups overlap"

FROZEN_CODEC = "icm-dicm-lite0"


def write_view(source: Path, view: Path) -> int:
    """Links every animal image of ``source`` (a labels.csv folder) into ``view`` with its group as class_index."""
    view.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(source / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            group = _GROUP_OF.get(int(row["class_index"]))
            if group is None:
                continue
            link = view / row["file"]
            if not link.exists():
                os.symlink((source / row["file"]).resolve(), link)
            rows.append((row["file"], group, row.get("torchvision_name", "")))
    with open(view / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "class_index", "imagenet_name"])
        writer.writerows(rows)
    return len(rows)


def probes(runs: Path) -> dict[str, list[str]]:
    """The ``icm probe`` options of each probe, by the name of its result folder."""
    stage1, stage3 = runs / "ssl-moco-lite0/final.safetensors", runs / "ssl-joint-lite0/final.safetensors"
    return {
        "frozen": ["--codec", FROZEN_CODEC],
        "ssl": ["--codec", str(runs / "ssl-codec-lite0/final.safetensors"), "--model-weights", str(stage3)],
        "uncompressed-imagenet": ["--codec", "none"],
        "uncompressed-stage1": ["--codec", "none", "--model-weights", str(stage1)],
        "uncompressed-stage3": ["--codec", "none", "--model-weights", str(stage3)],
    }


def run(args) -> None:
    views = args.out / "views"
    counts = {
        name: write_view(args.data / folder, views / name)
        for name, folder in (("train", "imagenet-train500"), ("eval", "imagenet-dev200"))
    }
    print(f"views: {counts['train']} training and {counts['eval']} evaluation images in {len(ANIMAL_GROUPS)} groups")
    icm = Path(sys.executable).with_name("icm")
    for name, options in probes(args.runs).items():
        folder = args.out / name
        if (folder / "probe.json").exists():
            print(f"{name}: done already ({folder / 'probe.json'})")
            continue
        command = [str(icm), "probe", "--train", str(views / "train"), "--eval", str(views / "eval"), *options]
        command += ["--out", str(folder)]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)


def report(args) -> None:
    results = {}
    for name in probes(Path(".")):
        path = args.bench / name / "probe.json"
        if path.exists():
            results[name] = json.loads(path.read_text())["results"]
    if not {"frozen", "ssl"} <= set(results):
        raise SystemExit(f"{args.bench}: needs the frozen and ssl probes (run first)")
    lines = ["| probe | quality | bpp | top-1 (%) | top-5 (%) |", "|---|---|---|---|---|"]
    for name, rows in results.items():
        for r in rows:
            bpp = "—" if r["bpp"] is None else f"{r['bpp']:.3f}"
            quality = "—" if r["quality"] is None else r["quality"]
            lines.append(f"| {name} | {quality} | {bpp} | {r['top1']:.1f} | {r['top5']:.1f} |")
    rates = {name: [r["bpp"] for r in results[name]] for name in ("frozen", "ssl")}
    top1 = {name: [r["top1"] for r in results[name]] for name in ("frozen", "ssl")}
    figure = bd(rates["frozen"], top1["frozen"], rates["ssl"], top1["ssl"], method="pchip", monotonic=True).as_dict()
    print("\n".join(lines))
    print(f"\nssl vs frozen on probe top-1: {json.dumps(figure)}")
    first = results["frozen"][0]
    print(f"{first['train_images']} training / {first['eval_images']} evaluation images, {first['classes']} groups")
    if args.json:
        document = {"groups": {k: [list(r) for r in v] for k, v in ANIMAL_GROUPS.items()}, "probes": results}
        document["ssl_vs_frozen"] = figure
        args.json.write_text(json.dumps(document, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="write the labelled views and run every probe (resumes: done probes are kept)")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--data", type=Path, default=Path("../shared/data"))
    r.add_argument("--runs", type=Path, default=Path.home() / ".cache/icmkit-runs/ssl")
    rep = sub.add_parser("report", help="print the figures from a run folder")
    rep.add_argument("bench", type=Path)
    rep.add_argument("--json", type=Path)
    args = parser.parse_args()
    (run if args.command == "run" else report)(args)


if __name__ == "__main__":
    main()
