"""The benchmark's tasks as registered :class:`TaskSpec`\\ s: what ``--task`` takes, what ``--data`` must be, how
the dataset is read, which model scores it and how its evaluator is built. A new task is one module that calls
:func:`register_task` (its evaluator implements :class:`icmkit.tasks.evaluators.Evaluator`); ``icm bench``,
``run_bench`` and ``open_dataset`` find it here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from icmkit.bench.datasets import Dataset, DatasetError, classification, coco, image_folder
from icmkit.tasks.evaluators import ClassificationEvaluator, DetectionEvaluator, Evaluator, FidelityEvaluator


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task.

    Args:
        name: the ``--task`` value.
        data: what ``--data`` must hold, in words (``icm bench --help`` and errors).
        read_data: ``(folder, annotations or None)`` → the :class:`~icmkit.bench.datasets.Dataset`.
        build_evaluator: ``(task model or None, dataset)`` → the evaluator around an already loaded model; its
            ``record_columns`` are the task's columns in ``results.csv``.
        load_model: ``(model name, weights, detector_min_size)`` → the task model; None: the task needs none.
        default_model: the model scored when ``--model`` is not given.
        needs_data: True when the photos bundled with icmkit cannot serve it (no default ``--data``).
    """

    name: str
    data: str
    read_data: Callable[[Path, Path | None], Dataset]
    build_evaluator: Callable[[object, Dataset], Evaluator]
    load_model: Callable[[str, object, int], object] | None = None
    default_model: str | None = None
    needs_data: bool = False

    def load_evaluator(self, model: str | None, weights, dataset: Dataset, detector_min_size: int = 800):
        """Load the task model (``model`` or :attr:`default_model`, with ``weights``) and wrap it."""
        loaded = (
            None
            if self.load_model is None
            else self.load_model(model or self.default_model, weights, detector_min_size)
        )
        return self.build_evaluator(loaded, dataset)


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} is registered already")
    TASKS[spec.name] = spec
    return spec


def task_spec(name: str) -> TaskSpec:
    """The registered task ``name``; one clear error naming the others otherwise."""
    if name not in TASKS:
        raise DatasetError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


# -- the built-in tasks ------------------------------------------------------------------------------
def _labels(dataset: Dataset) -> dict[str, int]:
    return {s.key: s.label for s in dataset.samples if s.label is not None}


def _image_ids(dataset: Dataset) -> dict[str, int]:
    return {s.key: s.image_id for s in dataset.samples if s.image_id is not None}


def _classifier(model: str, weights, _min_size: int):
    from icmkit.pretrained.classifiers import load_classifier

    return load_classifier(model, weights=weights)


def _detector(masks: bool):
    def load(model: str, weights, min_size: int):
        from icmkit.pretrained.detectors import load_detector
        from icmkit.tasks.evaluators import EvaluatorError

        loaded = load_detector(model, weights=weights, min_size=min_size, max_size=max(1333, min_size))
        if masks and not loaded.has_masks:
            raise EvaluatorError(f"{model} predicts no masks; segmentation needs a Mask R-CNN")
        return loaded

    return load


def _need(model, what: str):
    from icmkit.tasks.evaluators import EvaluatorError

    if model is None:
        raise EvaluatorError(f"this task needs {what}")
    return model


def _coco_evaluator(masks: bool):
    def build(detector, dataset: Dataset) -> Evaluator:
        if dataset.annotations is None:
            raise DatasetError("this task needs COCO annotations")
        return DetectionEvaluator(_need(detector, "a detector"), dataset.annotations, _image_ids(dataset), segm=masks)

    return build


def _coco_data(root: Path, annotations: Path | None) -> Dataset:
    return coco(root, annotations)


COCO_DATA = "a COCO folder (images + instances JSON)"
register_task(
    TaskSpec(
        "classify",
        "a labelled folder (labels.csv or ImageNet wnid folders)",
        lambda root, _annotations: classification(root),
        lambda classifier, dataset: ClassificationEvaluator(_need(classifier, "a classifier"), _labels(dataset)),
        _classifier,
        default_model="tf_efficientnet_lite0",
    )
)
register_task(
    TaskSpec("detect", COCO_DATA, _coco_data, _coco_evaluator(False), _detector(False), "fasterrcnn_resnet50_fpn", True)
)
register_task(
    TaskSpec("segment", COCO_DATA, _coco_data, _coco_evaluator(True), _detector(True), "maskrcnn_resnet50_fpn", True)
)
register_task(
    TaskSpec(
        "fidelity",
        "a folder of images",
        lambda root, _annotations: image_folder(root),
        lambda _model, _dataset: FidelityEvaluator(),
    )
)
