"""Evidence of the receiver-side restoration filters (issue 21): top-1 of three classifiers and fidelity, for each
standard codec beside the same codec restored, with BD figures against the base.

    python benchmarks/restoration_evidence.py run --data ../shared/data/imagenet-dev200 --out bench/restore-dev200 \
        --codecs hevc444,hevc444+mmd,jpeg,jpeg+mmd,icm-mmd [--filter hevc444:beta0=RUN/final.safetensors]
    python benchmarks/restoration_evidence.py report bench/restore-dev200 --json docs/restoration-evidence-dev200.json

``run`` follows ``icm bench``'s classification protocol (Resize 256 + CenterCrop 256 of each labelled image, every
codec at its default grid, top-1 of EfficientNet-Lite0 / Lite1 / Lite2 on the decoded 256² image with each
classifier's own preprocessing) but codes each image once per base codec and quality: a composed codec's stream is
its base's, byte for byte, so its row reuses the base's stream and decode and adds the filter (exactly what its
``decode`` does; a check on the first image of each run compares the two). Three classifiers score every decoded
image in the same pass. ``--filter BASE:LABEL=FILE`` adds a filter file (an ablation run) as codec
``BASE+LABEL``; ``--filter BASE:LABEL=F1,F2,…`` is one model per quality band (a banded ``RestoredCodec``: each
file's own ``quality_lo…quality_hi`` says which streams it restores, the nearest band outside them). Rows go to
``results.csv`` as they are measured; a rerun resumes, measuring only the codecs
that are missing (a filter added later codes its base again but writes only its own rows).

``report``: BD-rate on top-1 (pchip after an isotonic fit, as ``icm bench``) of each composed codec against its
base and against the learned pixel codec, and BD-PSNR / BD-MS-SSIM against the base (pchip), with overlap ranges
and point counts; the targets are issue 21's.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

CLASSIFIERS = {"lite0": "tf_efficientnet_lite0", "lite1": "tf_efficientnet_lite1", "lite2": "tf_efficientnet_lite2"}
COLUMNS = ["key", "codec", "quality", "bpp", "psnr", "ms_ssim", *(f"top1_{c}" for c in CLASSIFIERS)]
CROP = 256
# Issue 21's targets: BD-rate on top-1 of BASE+mmd against BASE (≤, in %), per classifier.
TARGETS = {
    "hevc444": {"lite0": -40.0, "lite1": -20.0, "lite2": -20.0},
    "jpeg": {"lite0": -50.0, "lite1": -25.0, "lite2": -25.0},
}
PSNR_GAIN_TARGETS = {"hevc444": 0.3, "jpeg": 0.8}  # BD-PSNR (dB) a β = 0 filter must gain over its base
BETA0_LABEL = "beta0"  # labels of β = 0 filters in --filter start so: their PSNR gain is checked against the target


def is_beta0(test: str) -> bool:
    return test.split("+", 1)[-1].startswith(BETA0_LABEL)


# -- run ---------------------------------------------------------------------------------------------
def _codecs(names: list[str], filters: list[str]) -> dict:
    """Name → codec; composed codecs (and ``--filter`` files) grouped under their base."""
    from icmkit.codecs.registry import get_codec, register_codec, registered_codec
    from icmkit.codecs.restored import RestoredCodec
    from icmkit.errors import UnknownCodecError

    codecs = {name: get_codec(name) for name in names}
    for spec in filters:
        base, _, rest = spec.partition(":")
        label, _, path = rest.partition("=")
        name = f"{base}+{label}"
        paths = [Path(p) for p in path.split(",")]
        try:  # a forked worker inherits the parent's registrations
            codecs[name] = registered_codec(name)
        except UnknownCodecError:
            codecs[name] = register_codec(RestoredCodec(get_codec(base), paths, name=name))
    for codec in codecs.values():
        codec.require_available()
        if isinstance(codec, RestoredCodec):
            codec.filter()
    return codecs


def _groups(codecs: dict) -> dict[str, list]:
    """Coding groups: a base codec (coded once) and the composed codecs over it; other codecs alone."""
    from icmkit.codecs.restored import RestoredCodec

    groups: dict[str, list] = defaultdict(list)
    for codec in codecs.values():
        groups[codec.base.name if isinstance(codec, RestoredCodec) else codec.name].append(codec)
    return groups


def _worker_init() -> None:
    from icmkit.threads import one_thread_worker

    one_thread_worker()


_STATE: dict = {}


def _measure(job: tuple) -> list[dict]:
    """One image, one coding group, one quality: a row per codec of the group that is not measured yet."""
    from icmkit import api
    from icmkit.bench.metrics import ms_ssim
    from icmkit.bench.protocols import resize_center_crop
    from icmkit.codecs.restored import RestoredCodec

    names, filters, base_name, todo, quality, key, path, label, check = job
    if "codecs" not in _STATE:
        _STATE["codecs"] = _codecs(names, filters)
        _STATE["classifiers"] = {c: api.cached_classifier(name) for c, name in CLASSIFIERS.items()}
    codecs = [c for c in _STATE["codecs"].values() if c.name in todo]
    image = resize_center_crop(api.read_image(path), CROP)
    plain = api.get_codec(base_name)
    stream = plain.encode(image, quality)
    decoded, sizes = {}, {}
    base_decoded = plain.decode(stream)
    for codec in codecs:  # the group's codecs all read the base's stream
        sizes[codec.name] = len(stream)
        if isinstance(codec, RestoredCodec):
            decoded[codec.name] = codec.restore(base_decoded, codec.stream_quality(stream))
            if check and not np.array_equal(decoded[codec.name], codec.decode(stream)):
                raise SystemExit(f"{codec.name}: restoring the base decode differs from the codec's own decode")
        else:
            decoded[codec.name] = base_decoded
    rows = []
    order = list(decoded)
    scores = {c: clf.predict([decoded[n] for n in order]).argmax(1) for c, clf in _STATE["classifiers"].items()}
    for index, name in enumerate(order):
        data_bytes = sizes[name]
        rows.append(
            {
                "key": key,
                "codec": name,
                "quality": quality,
                "bpp": 8 * data_bytes / (CROP * CROP),
                "psnr": api.psnr(image, decoded[name]),
                "ms_ssim": ms_ssim(image, decoded[name]),
                **{f"top1_{c}": int(scores[c][index] == label) for c in CLASSIFIERS},
            }
        )
    return rows


def run(args) -> None:
    from icmkit.bench.datasets import classification
    from icmkit.cli.progress import Progress

    names = [n for n in args.codecs.split(",") if n]
    codecs = _codecs(names, args.filter)
    dataset = classification(Path(args.data)).limit(args.limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    done = set()
    if results.is_file():
        with open(results) as handle:
            done = {(r["codec"], float(r["quality"]), r["key"]) for r in csv.DictReader(handle)}
    jobs = []
    for base_name, group in _groups(codecs).items():
        grid = args.grid.get(base_name) or group[0].quality.grid
        for quality in grid:
            for index, sample in enumerate(dataset.samples):
                todo = [c.name for c in group if (c.name, float(quality), sample.key) not in done]
                if todo:
                    job = (base_name, todo, quality, sample.key, str(sample.path), sample.label, index == 0)
                    jobs.append((names, args.filter, *job))
    new = not results.is_file()
    with open(results, "a", newline="") as handle, Progress("restoration evidence", len(jobs), unit="jobs") as bar:
        writer = csv.DictWriter(handle, COLUMNS)
        if new:
            writer.writeheader()
        with ProcessPoolExecutor(args.workers, initializer=_worker_init) as pool:
            for future in as_completed([pool.submit(_measure, job) for job in jobs]):
                writer.writerows(future.result())
                handle.flush()
                bar.advance()


# -- report ------------------------------------------------------------------------------------------
def curves(folder: Path) -> dict[str, dict[str, tuple[list, list]]]:
    """codec → metric → (mean bpp per quality, mean metric per quality), sorted by rate."""
    rows = defaultdict(list)
    with open(folder / "results.csv") as handle:
        for row in csv.DictReader(handle):
            rows[(row["codec"], float(row["quality"]))].append(row)
    counts = {len(v) for v in rows.values()}
    if len(counts) > 1:
        raise SystemExit(f"{folder}: unequal image counts per point {sorted(counts)} (an unfinished run?)")
    result: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: ([], [])))
    metrics = ["psnr", "ms_ssim", *(f"top1_{c}" for c in CLASSIFIERS)]
    for (codec, _), items in sorted(rows.items(), key=lambda kv: np.mean([float(r["bpp"]) for r in kv[1]])):
        rate = float(np.mean([float(r["bpp"]) for r in items]))
        for metric in metrics:
            scale = 100.0 if metric.startswith("top1") else 1.0
            value = scale * float(np.mean([float(r[metric]) for r in items]))
            result[codec][metric][0].append(rate)
            result[codec][metric][1].append(value)
    return result


def compare(found: dict, test: str, anchor: str, metric: str) -> dict:
    from icmkit.bench.bd import bd

    (ra, ma), (rt, mt) = found[anchor][metric], found[test][metric]
    monotonic = metric.startswith("top1")
    result = bd(ra, ma, rt, mt, method="pchip", monotonic=monotonic).as_dict()
    return {"test": test, "anchor": anchor, "metric": metric, **result}


def report(args) -> None:
    folder = Path(args.folder)
    found = curves(folder)
    records = []
    for test in sorted(found):
        if "+" not in test:
            continue
        base = test.split("+", 1)[0]
        for metric in ["psnr", "ms_ssim", *(f"top1_{c}" for c in CLASSIFIERS)]:
            record = compare(found, test, base, metric)
            classifier = metric.removeprefix("top1_")
            target = TARGETS.get(base, {}).get(classifier) if metric.startswith("top1") and not is_beta0(test) else None
            record["target_pct"] = target
            if metric == "psnr" and is_beta0(test):
                record["target_db"] = PSNR_GAIN_TARGETS.get(base)
            records.append(record)
            if args.learned in found and metric.startswith("top1"):
                records.append(compare(found, test, args.learned, metric))
    print("| test | anchor | metric | BD-rate | BD-metric | overlap | points | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        unit = "dB" if r["metric"] == "psnr" else ("" if r["metric"] == "ms_ssim" else "pp")
        rate = r["bd_rate_pct"]
        verdict = ""
        if r.get("target_pct") is not None and not math.isnan(rate):
            verdict = ("met" if rate <= r["target_pct"] else "not met") + f" (≤ {r['target_pct']:+.0f} %)"
        if r.get("target_db") is not None and not math.isnan(r["bd_metric"]):
            verdict = ("met" if r["bd_metric"] >= r["target_db"] else "not met") + f" (≥ +{r['target_db']} dB)"
        print(
            f"| {r['test']} | {r['anchor']} | {r['metric']} | {rate:+.1f} % | {r['bd_metric']:+.3f} {unit} | "
            f"{r['overlap_lo']:.4g}–{r['overlap_hi']:.4g} | {r['points']} | {verdict} |"
        )
    points = {codec: {m: {"bpp": v[0], "value": v[1]} for m, v in metrics.items()} for codec, metrics in found.items()}
    if args.json:
        payload = {"data": args.data_label, "crop": CROP, "bd": records, "curves": points}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=float) + "\n")


def _grids(items: list[str]) -> dict[str, list]:
    grids = {}
    for item in items:
        name, _, values = item.partition("=")
        grids[name] = [float(v) if "." in v else int(v) for v in values.split(",") if v]
    return grids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="code, restore and score")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--codecs", default="hevc444,hevc444+mmd,jpeg,jpeg+mmd,icm-mmd")
    p.add_argument("--filter", action="append", default=[], help="BASE:LABEL=FILE, a filter file as BASE+LABEL")
    p.add_argument("--grid", action="append", default=[], help="CODEC=Q1,Q2,… instead of the codec's default grid")
    p.add_argument("--limit", type=int)
    p.add_argument("--workers", type=int, default=2)
    p = sub.add_parser("report", help="BD figures of a run")
    p.add_argument("folder")
    p.add_argument("--learned", default="icm-mmd", help="the learned pixel codec each composed codec must beat")
    p.add_argument("--json")
    p.add_argument("--data-label", default="imagenet-dev200")
    args = parser.parse_args()
    if args.command == "run":
        args.grid = _grids(args.grid)
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
