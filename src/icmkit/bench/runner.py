"""The benchmark run: code every image with every codec × quality, score fidelity and the task model,
write one row per image × codec × quality, then aggregate.

Coding runs in worker processes (``workers``), each image loaded and prepared by the worker itself
(so only paths and what was decoded cross process boundaries: 256² crops, or a feature codec's decoded
features as numpy arrays); the task model runs batched in the main process on what comes back, through
the task's :class:`~icmkit.tasks.evaluators.Evaluator` (one protocol for pixels and features). Rows are
appended to ``results.csv`` as chunks finish, so an interrupted run resumes where it stopped: finished
(codec, quality, image) rows are not coded again.

Feature codecs (classification only): each gets the same resize-256 + centre-crop-256 input the pixel
codecs code, its bpp counts those 65,536 pixels, and its decoded features go through the tail of the
benchmark's own classifier (see :mod:`icmkit.tasks.evaluators`). Their fidelity columns stay empty.

References: the task model on the *uncompressed* inputs — the crop itself, and the classifier's head
features of the crop for every feature split in use — is scored once per image into ``reference.csv``
(``key, reference, pred, top1, top5, agree``); agreement is measured against it, and the summary shows
it beside the codecs.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icmkit import fidelity
from icmkit.bench.datasets import Dataset, Sample
from icmkit.bench.heatmap import STATISTIC, energy_scale, feature_energy, heatmap_image
from icmkit.bench.metrics import ms_ssim
from icmkit.bench.plan import CodecPlan
from icmkit.bench.protocols import coding_view, resize_center_crop
from icmkit.codecs.registry import get_codec
from icmkit.decoded import FeatureMaps
from icmkit.fileio import atomic_write, complete_lines, drop_partial_line
from icmkit.image import encode_png, read_image
from icmkit.tasks.evaluators import Evaluator, input_name, portable
from icmkit.threads import one_thread_worker

# A results row: the coding's columns, then the task's (its evaluator's ``record_columns``: classification's
# pred, top1, top5, agree; none for detection, whose records go to a sidecar), then the timings.
CODING_COLUMNS = ("key", "codec", "quality", "width", "height", "bytes", "bpp", "psnr", "ms_ssim")
TIMING_COLUMNS = ("enc_s", "dec_s")


def result_columns(evaluator: Evaluator) -> list[str]:
    """The columns of a run's ``results.csv`` for this task."""
    return [*CODING_COLUMNS, *evaluator.record_columns, *TIMING_COLUMNS]


def reference_columns(evaluator: Evaluator) -> list[str]:
    """The columns of a run's ``reference.csv``: the task model's records on the uncompressed inputs."""
    return ["key", "reference", *evaluator.record_columns]


SHOWCASE_DIR = "showcase"  # decoded versions of one image, for the report's side-by-side crops
HEATMAPS_INDEX = "heatmaps.json"  # in SHOWCASE_DIR: the feature heat maps and what they show
DETECTIONS_DIR = "detections"  # COCO results records per codec × quality, one JSON line per image
REFERENCE_CHUNK = 32  # uncompressed images held at once while scoring references


@dataclass
class BenchRun:
    """One benchmark run's settings: what :func:`execute` codes, scores and writes to ``out``.

    Built by :func:`icmkit.bench.benchmark.run_bench`; the evaluator comes from the task model when not given.
    """

    dataset: Dataset
    task: str  # "classify" | "detect" | "segment" | "fidelity"
    plans: list[CodecPlan]
    out: Path
    classifier: object | None = None  # an icmkit.tasks.Classifier for task "classify" (when no evaluator is given)
    detector: object | None = None  # an icmkit.pretrained.detectors.Detector for "detect" / "segment" (likewise)
    evaluator: Evaluator | None = None  # the task's evaluator; built from the task model above when None
    workers: int = 1
    crop: int = 256
    chunk: int = 16
    results_name: str = "results.csv"  # one file per rank when sharded with torchrun
    progress: Callable[[int], None] = field(default=lambda n: None)

    def __post_init__(self):
        if self.evaluator is None:
            from icmkit.bench.tasks import task_spec

            model = self.classifier if self.classifier is not None else self.detector
            self.evaluator = task_spec(self.task).build_evaluator(model, self.dataset)

    @property
    def input_crop(self) -> int | None:
        """The side of the centre crop codecs get (None: the whole image)."""
        return self.crop if self.evaluator.crops_input else None


def prepare(sample: Sample, crop: int | None) -> np.ndarray:
    """The codec input for one sample: the resize + centre crop of the classification protocol, or the image."""
    image = read_image(sample.path)
    return resize_center_crop(image, crop) if crop else image


def code_chunk(
    codec_name: str, quality: float, samples: list[Sample], crop: int | None, detection_size: tuple | None = None
):
    """Worker: code and decode each sample; rows (without task metrics) and what was decoded (images, or
    feature maps with numpy tensors, which pickle cheaply). ``detection_size``: feature codecs code in the
    detection geometry of that ``(min_size, max_size)`` (the detector's own resize, on the sender)."""
    codec = coding_view(get_codec(codec_name), detection_size)
    rows, decoded_items = [], []
    for sample in samples:
        image = prepare(sample, crop)
        start = time.perf_counter()
        data = codec.encode(image, quality)
        encoded = time.perf_counter()
        decoded = codec.decode(data)
        decode_s = time.perf_counter() - encoded
        height, width = image.shape[:2]
        if isinstance(decoded, FeatureMaps):  # no pixels: no fidelity
            decoded, psnr, msssim = portable(decoded), "", ""
        else:
            psnr, msssim = fidelity.psnr(image, decoded), ms_ssim(image, decoded)
        rows.append(
            {
                "key": sample.key,
                "codec": codec_name,
                "quality": quality,
                "width": width,
                "height": height,
                "bytes": len(data),
                "bpp": 8 * len(data) / (width * height),
                "psnr": psnr,
                "ms_ssim": msssim,
                "enc_s": encoded - start,
                "dec_s": decode_s,
            }
        )
        decoded_items.append(decoded)
    return rows, decoded_items


def read_results(path: Path) -> list[dict]:
    """The complete rows of a results file (a partial last row, from a killed run, is left out)."""
    if not path.is_file():
        return []
    return list(csv.DictReader(io.StringIO(complete_lines(path), newline="")))


def csv_header(path: Path) -> list[str]:
    """The columns a results file was written with; empty for a missing or empty file."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return next(csv.reader(handle), None) or []


class _CsvAppender:
    """Rows appended to a CSV file, each flushed to disk; a file kept from an earlier run keeps its own header
    (one written before a task had its own columns, say): the rows fill its columns."""

    def __init__(self, path: Path, columns: list[str]):
        drop_partial_line(path)  # a killed run's half-written row: coded again, not kept
        new = not path.is_file() or path.stat().st_size == 0
        if not new:
            columns = csv_header(path) or columns
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()

    def write(self, rows: list[dict]) -> None:
        self.writer.writerows(rows)
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def _rank_suffix(run: BenchRun) -> str:
    return run.results_name.removeprefix("results").removesuffix(".csv")  # "" or ".rank<r>-of-<n>"


def reference_file(run: BenchRun) -> Path:
    return run.out / f"reference{_rank_suffix(run)}.csv"


def file_stem(codec: str, quality: float | str) -> str:
    """A codec × quality as a file name: a codec named by its weights file's path keeps no separators."""
    return f"{re.sub(r'[^A-Za-z0-9._@+=-]', '_', codec)}-{quality}"


def sidecar_file(run: BenchRun, folder: str, codec: str, quality: float) -> Path:
    return run.out / folder / f"{file_stem(codec, quality)}{_rank_suffix(run)}.jsonl"


def detections_file(run: BenchRun, codec: str, quality: float) -> Path:
    return sidecar_file(run, DETECTIONS_DIR, codec, quality)


def read_sidecar(out: Path, folder: str, codec: str, quality: float | str) -> dict[str, dict]:
    """Saved records of one codec × quality, all ranks: key → record (last wins)."""
    found: dict[str, dict] = {}
    base = out / folder
    stem = file_stem(codec, quality)
    paths = [base / f"{stem}.jsonl", *sorted(base.glob(f"{glob.escape(stem)}.rank*-of-*.jsonl"))]
    for path in (p for p in paths if p.is_file()):
        for line in complete_lines(path).splitlines():
            if line.strip():
                entry = json.loads(line)
                found[entry["key"]] = entry
    return found


def read_detections(out: Path, codec: str, quality: float | str) -> dict[str, dict]:
    """Saved detections of one codec × quality, all ranks: key → {"image_id", "records"} (last wins)."""
    return read_sidecar(out, DETECTIONS_DIR, codec, quality)


def _pending_jobs(run: BenchRun, done: set[tuple[str, str, str]]) -> Iterator[tuple[str, int, list[Sample]]]:
    for plan in run.plans:
        for quality in plan.qualities:
            todo = [s for s in run.dataset.samples if (plan.codec, str(quality), s.key) not in done]
            for start in range(0, len(todo), run.chunk):
                yield plan.codec, quality, todo[start : start + run.chunk]


def check_codecs(plans: list[CodecPlan], evaluator: Evaluator) -> None:
    """Refuse, before anything is coded, every codec the task's evaluator cannot score."""
    for plan in plans:
        evaluator.check_codec(get_codec(plan.codec), plan.qualities)


def _references(run: BenchRun) -> None:
    """Score the task model on the uncompressed inputs of every image still without a reference row;
    take saved rows back (agreement is measured against them)."""
    names = run.evaluator.reference_names()
    if not names:
        return
    path = reference_file(run)
    saved = read_results(path)
    run.evaluator.restore_reference(saved)
    have = {(r["reference"], r["key"]) for r in saved}
    missing = [s for s in run.dataset.samples if any((name, s.key) not in have for name in names)]
    if not missing:
        return
    writer = _CsvAppender(path, reference_columns(run.evaluator))
    try:
        for start in range(0, len(missing), REFERENCE_CHUNK):
            part = missing[start : start + REFERENCE_CHUNK]
            records = run.evaluator.reference([s.key for s in part], [prepare(s, run.input_crop) for s in part])
            writer.write([r for r in records if (r["reference"], r["key"]) not in have])
    finally:
        writer.close()


def _persist(run: BenchRun, rows: list[dict], records: list[dict]) -> None:
    """Task records into the rows (their columns) or, first, into the evaluator's sidecar file."""
    evaluator = run.evaluator
    if evaluator.sidecar:
        path = sidecar_file(run, evaluator.sidecar, rows[0]["codec"], rows[0]["quality"])
        path.parent.mkdir(exist_ok=True)
        drop_partial_line(path)
        lines = [json.dumps({"key": row["key"], **record}) for row, record in zip(rows, records)]
        with path.open("a") as handle:  # before the rows: a row on disk always has its records
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    for row, record in zip(rows, records):
        row.update({k: v for k, v in record.items() if k in evaluator.record_columns})


def _save_showcase(run: BenchRun, name: str, image: np.ndarray) -> None:
    folder = run.out / SHOWCASE_DIR
    folder.mkdir(exist_ok=True)
    atomic_write(folder / f"{name}.png", encode_png(image))


class _Heatmaps:
    """Heat maps of the showcase image's features: the uncompressed ones per split (computed once per run,
    they set the colour scale) and every feature codec's decoded ones, listed in ``heatmaps.json``."""

    def __init__(self, run: BenchRun, sample: Sample):
        self.run, self.sample = run, sample
        self.folder = run.out / SHOWCASE_DIR
        self.index_path = self.folder / HEATMAPS_INDEX
        self.originals: dict[str, float] = {}  # reference name → colour scale

    def _index(self) -> dict:
        if self.index_path.is_file():
            try:
                index = json.loads(self.index_path.read_text())
                if isinstance(index, dict) and isinstance(index.get("maps"), dict):
                    return index
            except (OSError, json.JSONDecodeError):
                pass
        return {"statistic": STATISTIC, "originals": {}, "maps": {}}

    def _write(self, picture: np.ndarray, file: str, section: str, name: str, entry: dict) -> None:
        self.folder.mkdir(exist_ok=True)
        atomic_write(self.folder / file, encode_png(picture))
        index = self._index()
        index.setdefault(section, {})[name] = {"file": file, **entry}
        atomic_write(self.index_path, json.dumps(index, indent=2).encode())

    def _original(self, reference: str) -> float:
        """The colour scale of ``reference``'s uncompressed features (their heat map is saved on first use)."""
        if reference not in self.originals:
            image = prepare(self.sample, self.run.input_crop)
            original = self.run.evaluator.uncompressed([image], reference)[0]
            energy = feature_energy(original.tensors["features"])
            scale = energy_scale(energy)
            picture = heatmap_image(
                energy,
                scale,
                int(original.strides["features"]),
                _shown_size(original),
                self.run.evaluator.feature_window(original),
            )
            self._write(
                picture, f"original.{reference.replace('@', '-')}.png", "originals", reference, {"scale": scale}
            )
            self.originals[reference] = scale
        return self.originals[reference]

    def save(self, name: str, decoded: FeatureMaps) -> None:
        reference = input_name(decoded)
        scale = self._original(reference)
        window = self.run.evaluator.feature_window(decoded)
        energy = feature_energy(decoded.tensors["features"])
        picture = heatmap_image(energy, scale, int(decoded.strides["features"]), _shown_size(decoded), window)
        self._write(
            picture, f"{name}.features.png", "maps", name, {"reference": reference, "window": list(window or [])}
        )


def _shown_size(features: FeatureMaps) -> tuple[int, int]:
    """The image a heat map covers: the coded one, or the detector's resize of it (detection geometry)."""
    return tuple(features.meta.get("resized") or features.image_size)


def execute(run: BenchRun) -> Path:
    """Run (or resume) the benchmark; returns the path of ``results.csv``."""
    run.out.mkdir(parents=True, exist_ok=True)
    path = run.out / run.results_name
    done = {(r["codec"], r["quality"], r["key"]) for r in read_results(path)}
    jobs = list(_pending_jobs(run, done))
    check_codecs(run.plans, run.evaluator)
    if run.dataset.samples:
        _references(run)
    showcase = run.dataset.samples[0] if run.dataset.samples else None
    if jobs and showcase is not None:
        _save_showcase(run, "original", prepare(showcase, run.input_crop))
    heatmaps = _Heatmaps(run, showcase) if showcase is not None else None
    writer = _CsvAppender(path, result_columns(run.evaluator))

    def finish(rows: list[dict], decoded: list) -> None:
        # Records go to disk; set metrics are computed from what is on disk (so a resumed run reports the
        # same figures), hence nothing needs to stay accumulated between chunks.
        run.evaluator.reset()
        _persist(run, rows, run.evaluator.update([row["key"] for row in rows], decoded))
        for row, item in zip(rows, decoded):
            if showcase is not None and row["key"] == showcase.key:
                name = file_stem(row["codec"], row["quality"])
                if isinstance(item, FeatureMaps):
                    heatmaps.save(name, item)
                else:
                    _save_showcase(run, name, item)
        writer.write(rows)
        run.progress(len(rows))

    try:
        if run.workers <= 1:
            for codec, quality, samples in jobs:
                finish(*code_chunk(codec, quality, samples, run.input_crop, run.evaluator.detection_size))
        else:
            with ProcessPoolExecutor(max_workers=run.workers, initializer=one_thread_worker) as pool:
                size = run.evaluator.detection_size
                futures = [pool.submit(code_chunk, c, q, s, run.input_crop, size) for c, q, s in jobs]
                for future in as_completed(futures):
                    finish(*future.result())
    finally:
        writer.close()
    return path


def count_kept(run: BenchRun) -> int:
    """Rows of this run's codings already on disk (kept from an interrupted run, not coded again)."""
    planned = sum(len(plan.qualities) for plan in run.plans) * len(run.dataset.samples)
    return planned - count_pending(run)


def count_pending(run: BenchRun) -> int:
    done = {(r["codec"], r["quality"], r["key"]) for r in read_results(run.out / run.results_name)}
    return sum(len(samples) for _, _, samples in _pending_jobs(run, done))


# -- aggregation helpers (what the summary needs from a run's saved records) --------------------------------
def set_metrics(run: BenchRun) -> Callable[[str, int, list[dict]], dict]:
    """``(codec, quality, rows) → set-level metrics`` from saved records, through the run's evaluator."""
    evaluator = run.evaluator

    def metrics(codec: str, quality: float, rows: list[dict]) -> dict:
        evaluator.reset()
        if evaluator.sidecar:
            saved = read_sidecar(run.out, evaluator.sidecar, codec, quality)
            evaluator.update_from_records([saved[r["key"]] for r in rows if r["key"] in saved])
        else:
            evaluator.update_from_records(rows)
        return evaluator.compute()

    return metrics


def reference_label(name: str) -> str:
    """How a reference appears in the summary's codec column: ``(uncompressed image)``,
    ``(uncompressed blocks.2 features)``."""
    kind, _, split = name.partition("@")
    return f"(uncompressed {split} {kind})" if split else f"(uncompressed {kind})"


def reference_summary(run: BenchRun, keys: set[str]) -> list[dict]:
    """One summary record per reference of this run (no rate: ``bpp`` and fidelity stay empty)."""
    from icmkit.bench.summary import SUMMARY_COLUMNS

    rows = [r for r in read_results(run.out / "reference.csv") if r["key"] in keys]
    records = []
    for name in run.evaluator.reference_names():
        members = [r for r in rows if r["reference"] == name]
        if not members:
            continue
        run.evaluator.reset()
        run.evaluator.update_from_records(members)
        record = {column: "" for column in SUMMARY_COLUMNS}
        record.update({"codec": reference_label(name), "n": len(members), **run.evaluator.compute()})
        records.append(record)
    return records
