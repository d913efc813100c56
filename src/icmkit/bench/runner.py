"""The benchmark run: code every image with every codec × quality, score fidelity and the task model,
write one row per image × codec × quality, then aggregate.

Coding runs in worker processes (``workers``), each image loaded and prepared by the worker itself
(so only paths and decoded 256² crops cross process boundaries); the task model runs batched in the
main process on what comes back. Rows are appended to ``results.csv`` as chunks finish, so an
interrupted run resumes where it stopped: finished (codec, quality, image) rows are not coded again.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icmkit import api
from icmkit.bench.datasets import Dataset, Sample
from icmkit.bench.metrics import ms_ssim
from icmkit.bench.plan import CodecPlan
from icmkit.bench.protocols import resize_center_crop
from icmkit.fileio import atomic_write
from icmkit.image import encode_png

RESULT_COLUMNS = ["key", "codec", "quality", "width", "height", "bytes", "bpp", "psnr", "ms_ssim",
                  "pred", "top1", "top5", "agree", "enc_s", "dec_s"]
SHOWCASE_DIR = "showcase"  # decoded versions of one image, for the report's side-by-side crops


@dataclass
class BenchRun:
    dataset: Dataset
    task: str  # "classify" | "fidelity"
    plans: list[CodecPlan]
    out: Path
    classifier: object | None = None  # icmkit.tasks.Classifier for task "classify"
    detector: object | None = None  # icmkit.tasks.detection.Detector for tasks "detect" / "segment"
    workers: int = 1
    crop: int = 256
    chunk: int = 16
    results_name: str = "results.csv"  # one file per rank when sharded with torchrun
    progress: Callable[[int], None] = field(default=lambda n: None)


def prepare(sample: Sample, task: str, crop: int) -> np.ndarray:
    """The codec input for one sample under the task's protocol."""
    image = api.read_image(sample.path)
    return resize_center_crop(image, crop) if task == "classify" else image


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; more threads per worker only oversubscribe


def code_chunk(codec_name: str, quality: int, samples: list[Sample], task: str, crop: int):
    """Worker: code and decode each sample; rows (without task metrics) and decoded images."""
    codec = api.get_codec(codec_name)
    rows, decoded_images = [], []
    for sample in samples:
        image = prepare(sample, task, crop)
        start = time.perf_counter()
        data = codec.encode(image, quality)
        encoded = time.perf_counter()
        decoded = codec.decode(data)
        decode_s = time.perf_counter() - encoded
        height, width = image.shape[:2]
        rows.append({
            "key": sample.key, "codec": codec_name, "quality": quality, "width": width, "height": height,
            "bytes": len(data), "bpp": 8 * len(data) / (width * height), "psnr": api.psnr(image, decoded),
            "ms_ssim": ms_ssim(image, decoded), "enc_s": encoded - start, "dec_s": decode_s,
        })
        decoded_images.append(decoded)
    return rows, decoded_images


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class _ResultWriter:
    def __init__(self, path: Path):
        new = not path.is_file() or path.stat().st_size == 0
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        if new:
            self.writer.writeheader()

    def write(self, rows: list[dict]) -> None:
        self.writer.writerows(rows)
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def _pending_jobs(run: BenchRun, done: set[tuple[str, str, str]]) -> Iterator[tuple[str, int, list[Sample]]]:
    for plan in run.plans:
        for quality in plan.qualities:
            todo = [s for s in run.dataset.samples if (plan.codec, str(quality), s.key) not in done]
            for start in range(0, len(todo), run.chunk):
                yield plan.codec, quality, todo[start : start + run.chunk]


def _reference_predictions(run: BenchRun) -> dict[str, np.ndarray]:
    """Top-5 of the task model on the uncompressed codec inputs, for agreement."""
    images = [prepare(s, run.task, run.crop) for s in run.dataset.samples]
    top = run.classifier.topk(images, k=5)
    return {s.key: top[i] for i, s in enumerate(run.dataset.samples)}


DETECTIONS_DIR = "detections"  # COCO results records per codec × quality, one JSON line per image


def detections_file(run: BenchRun, codec: str, quality: int) -> Path:
    suffix = run.results_name.removeprefix("results").removesuffix(".csv")  # "" or ".rank<r>-of-<n>"
    return run.out / DETECTIONS_DIR / f"{codec}-{quality}{suffix}.jsonl"


def read_detections(out: Path, codec: str, quality: int | str) -> dict[str, dict]:
    """Saved detections of one codec × quality, all ranks: key → {"image_id", "records"} (last wins)."""
    found: dict[str, dict] = {}
    folder = out / DETECTIONS_DIR
    paths = [folder / f"{codec}-{quality}.jsonl", *sorted(folder.glob(f"{codec}-{quality}.rank*-of-*.jsonl"))]
    for path in (p for p in paths if p.is_file()):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                found[entry["key"]] = entry
    return found


def _detect(run: BenchRun, rows: list[dict], decoded: list[np.ndarray], image_ids: dict) -> None:
    from icmkit.tasks.detection import detections_to_json

    predictions = run.detector.predict(decoded, batch_size=1)  # 1: no padding shared between images
    path = detections_file(run, rows[0]["codec"], rows[0]["quality"])
    path.parent.mkdir(exist_ok=True)
    lines = [json.dumps({"key": row["key"], "image_id": image_ids[row["key"]],
                         "records": detections_to_json(image_ids[row["key"]], prediction)})
             for row, prediction in zip(rows, predictions)]
    with path.open("a") as handle:  # before the rows: a row on disk always has its detections
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _score(run: BenchRun, rows: list[dict], decoded: list[np.ndarray], reference: dict, labels: dict) -> None:
    if run.task in ("detect", "segment"):
        _detect(run, rows, decoded, {s.key: s.image_id for s in run.dataset.samples})
        return
    if run.task != "classify":
        return
    top = run.classifier.topk(decoded, k=5)
    for row, predicted in zip(rows, top):
        label = labels[row["key"]]
        row["pred"] = int(predicted[0])
        row["top1"] = int(predicted[0] == label)
        row["top5"] = int(label in predicted)
        row["agree"] = int(predicted[0] == reference[row["key"]][0])


def _save_showcase(run: BenchRun, name: str, image: np.ndarray) -> None:
    folder = run.out / SHOWCASE_DIR
    folder.mkdir(exist_ok=True)
    atomic_write(folder / f"{name}.png", encode_png(image))


def _keep_showcase(run: BenchRun, rows: list[dict], decoded: list[np.ndarray]) -> None:
    showcase = run.dataset.samples[0].key if run.dataset.samples else None
    for row, image in zip(rows, decoded):
        if row["key"] == showcase:
            _save_showcase(run, f"{row['codec']}-{row['quality']}", image)


def execute(run: BenchRun) -> Path:
    """Run (or resume) the benchmark; returns the path of ``results.csv``."""
    run.out.mkdir(parents=True, exist_ok=True)
    path = run.out / run.results_name
    done = {(r["codec"], r["quality"], r["key"]) for r in read_results(path)}
    jobs = list(_pending_jobs(run, done))
    reference = _reference_predictions(run) if run.task == "classify" and jobs else {}
    if jobs and run.dataset.samples:
        _save_showcase(run, "original", prepare(run.dataset.samples[0], run.task, run.crop))
    labels = {s.key: s.label for s in run.dataset.samples}
    writer = _ResultWriter(path)

    def finish(rows: list[dict], decoded: list[np.ndarray]) -> None:
        _score(run, rows, decoded, reference, labels)
        _keep_showcase(run, rows, decoded)
        writer.write(rows)
        run.progress(len(rows))

    try:
        if run.workers <= 1:
            for codec, quality, samples in jobs:
                finish(*code_chunk(codec, quality, samples, run.task, run.crop))
        else:
            with ProcessPoolExecutor(max_workers=run.workers, initializer=_init_worker) as pool:
                futures = [pool.submit(code_chunk, c, q, s, run.task, run.crop) for c, q, s in jobs]
                for future in as_completed(futures):
                    finish(*future.result())
    finally:
        writer.close()
    return path


def count_pending(run: BenchRun) -> int:
    done = {(r["codec"], r["quality"], r["key"]) for r in read_results(run.out / run.results_name)}
    return sum(len(samples) for _, _, samples in _pending_jobs(run, done))
