"""Benchmark datasets: what to code and, per image, what a task model should find in it.

Three kinds, detected from the folder:

- **images** — any folder of images (fidelity only, Kodak-style);
- **classification** — a folder with ``labels.csv`` (``file,class_index``; extra columns ignored) or
  ImageNet-style wnid sub-folders (``n01440764/…``; indices in torchvision's order, from timm's list
  of the 1000 ImageNet synsets);
- **detection / segmentation** — COCO format: images plus an instances JSON (``annotations/
  instances_*.json`` beside or above the images, or given explicitly).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from icmkit.errors import IcmError
from icmkit.image import IMAGE_SUFFIXES


class DatasetError(IcmError):
    """A benchmark dataset that is missing, empty or inconsistent."""


@dataclass(frozen=True)
class Sample:
    """One image of a benchmark dataset and, for task datasets, its label or COCO image id."""

    path: Path
    key: str  # stable id in result files: the path relative to the dataset root
    label: int | None = None  # class index (classification)
    image_id: int | None = None  # COCO image id (detection / segmentation)


@dataclass
class Dataset:
    """A benchmark dataset: its images and what a task model should find in them (see the module docstring)."""

    root: Path
    kind: str  # "images" | "classification" | "coco"
    samples: list[Sample]
    annotations: Path | None = None  # COCO instances JSON
    meta: dict = field(default_factory=dict)

    def shard(self, rank: int, world: int) -> Dataset:
        """Every ``world``-th sample from ``rank`` (rank 0 keeps the first, the report's showcase)."""
        return Dataset(self.root, self.kind, self.samples[rank::world], self.annotations, self.meta)

    def limit(self, count: int | None) -> Dataset:
        if count is None or count >= len(self.samples):
            return self
        if count <= 0:
            raise DatasetError("--limit must be positive")
        return Dataset(self.root, self.kind, self.samples[:count], self.annotations, self.meta)


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k synsets in class-index order (shipped with timm)."""
    from importlib import resources

    text = (resources.files("timm.data") / "_info" / "imagenet_synsets.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def image_folder(root: Path) -> Dataset:
    files = _images_under(root)
    if not files:
        raise DatasetError(f"{root}: no images found")
    return Dataset(root, "images", [Sample(p, p.relative_to(root).as_posix()) for p in files])


def _labels_csv(root: Path, table: Path) -> Dataset:
    samples = []
    with table.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "class_index"} <= set(reader.fieldnames):
            raise DatasetError(f"{table}: needs the columns file,class_index")
        for line, row in enumerate(reader, start=2):
            path = root / row["file"]
            try:
                label = int(row["class_index"])
            except ValueError:
                raise DatasetError(f"{table}:{line}: class_index {row['class_index']!r} is not an integer") from None
            if not 0 <= label < 1000:
                raise DatasetError(f"{table}:{line}: class_index {label} is outside 0…999")
            if not path.is_file():
                raise DatasetError(f"{table}:{line}: image {row['file']!r} not found under {root}")
            samples.append(Sample(path, row["file"], label=label))
    if not samples:
        raise DatasetError(f"{table}: no rows")
    return Dataset(root, "classification", samples, meta={"labels": str(table)})


def _wnid_folders(root: Path) -> Dataset:
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name not in index:
            raise DatasetError(f"{folder}: sub-folder name is not an ImageNet wnid")
        samples += [Sample(p, p.relative_to(root).as_posix(), label=index[folder.name]) for p in _images_under(folder)]
    if not samples:
        raise DatasetError(f"{root}: wnid folders hold no images")
    return Dataset(root, "classification", samples, meta={"labels": "wnid folders"})


def classification(root: Path) -> Dataset:
    table = root / "labels.csv"
    if table.is_file():
        return _labels_csv(root, table)
    wnids = set(imagenet_wnids())
    if any(p.is_dir() and p.name in wnids for p in root.iterdir()):
        return _wnid_folders(root)
    raise DatasetError(f"{root}: no labels.csv and no ImageNet wnid sub-folders; classification needs labels")


def find_instances_json(root: Path) -> Path | None:
    for base in (root, root.parent):
        found = sorted((base / "annotations").glob("instances_*.json")) if (base / "annotations").is_dir() else []
        if found:
            return found[0]
    return None


def coco(root: Path, annotations: Path | None = None) -> Dataset:
    annotations = annotations or find_instances_json(root)
    if annotations is None or not annotations.is_file():
        raise DatasetError(f"{root}: no COCO instances JSON (annotations/instances_*.json); pass one explicitly")
    try:
        document = json.loads(annotations.read_text())
        images = document["images"]
        document["annotations"], document["categories"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{annotations}: not a COCO instances file ({exc.__class__.__name__})") from None
    image_dir = root / "images" if (root / "images").is_dir() else root
    by_name = {p.name: p for p in _images_under(image_dir)}
    samples = [
        Sample(by_name[entry["file_name"]], entry["file_name"], image_id=int(entry["id"]))
        for entry in sorted(images, key=lambda e: e["id"])
        if entry["file_name"] in by_name
    ]
    if not samples:
        raise DatasetError(f"{image_dir}: none of the images listed in {annotations.name} are present")
    return Dataset(root, "coco", samples, annotations=annotations, meta={"missing": len(images) - len(samples)})


def open_dataset(root: str | Path, task: str, annotations: str | Path | None = None) -> Dataset:
    """The dataset a task needs at ``root`` (its :class:`~icmkit.bench.tasks.TaskSpec` reads it): fidelity →
    images, classify → labels, detect / segment → COCO."""
    from icmkit.bench.tasks import task_spec

    spec = task_spec(task)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    return spec.read_data(root, Path(annotations) if annotations else None)
