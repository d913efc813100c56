"""Evaluators: how a task model scores what codecs decode — pixels or features — behind one protocol.

Every task of ``icm bench`` is an :class:`Evaluator` (plain objects, not ``nn.Module``\\ s), used as

- :meth:`~Evaluator.check_codec` — refuse, before anything is coded, a codec whose output this evaluator
  cannot score (a feature codec outside classification; a feature codec made on another backbone);
- :meth:`~Evaluator.reset` — forget what was accumulated;
- :meth:`~Evaluator.update` ``(keys, decoded)`` — run the task model on decoded items (``H×W×3`` uint8
  images or :class:`~icmkit.codecs.base.FeatureMaps`), accumulate, and return one JSON-able record per item:
  what result files keep (:attr:`~Evaluator.record_columns` of a result row, or a line in the
  :attr:`~Evaluator.sidecar` folder);
- :meth:`~Evaluator.update_from_records` — accumulate saved records without running a model (a resumed
  run, the summary of a finished one);
- :meth:`~Evaluator.compute` — set-level metrics of everything accumulated since the last reset (accuracies
  and mAP in %).

Evaluators that compare against the task model on *uncompressed* inputs (classification: top-1 agreement,
and the uncompressed top-1 a benchmark reports beside the codecs) also name their references
(:meth:`~Evaluator.reference_names`: ``"image"``, and ``"features@<split>"`` per feature split in use),
build the uncompressed input of each (:meth:`~Evaluator.uncompressed`), score them
(:meth:`~Evaluator.reference`) and take saved ones back (:meth:`~Evaluator.restore_reference`).

Feature codecs in classification (:class:`ClassificationEvaluator`): the decoded feature map of an
``H×W`` image is centre-cropped to the feature-map equivalent of the classifier's own preprocessing of
that image — its crop of the resized image, mapped back to the image and divided by the stride
(EfficientNet-Lite0 on a 256² crop: resize 256, crop 224 → the centre 28×28 of the 32×32 map at stride 8)
— and fed to the *tail of the same classifier* that scores the pixel codecs. The classifier must be the
backbone the features came from: same name, and a head whose weights digest equals the stream's.
Feature codecs in detection and segmentation (:class:`DetectionEvaluator`): a ResNet-50 ``layer1`` feature
codec codes each image in the detection geometry (:meth:`icmkit.codecs.feature.FeatureCodec.for_detection`
with the detector's own ``min_size`` / ``max_size``: the sender resizes as the detector would), and the
decoded map goes through the v1 detector's tail (:class:`icmkit.backbones.detection.SplitDetector`); the
detector's stem must be the head the stream names (digest). Fidelity refuses feature codecs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icmkit.backbones.split import check_backbone
from icmkit.codecs.base import Codec
from icmkit.decoded import FEATURES, CodecKind, FeatureMaps
from icmkit.errors import IcmError

IMAGE = "image"  # the reference name of pixel inputs
FEATURE_CODECS_SERVE = "feature codecs serve classification, detection and segmentation"


class EvaluatorError(IcmError):
    """A codec, an input or a saved record that an evaluator cannot score."""


def feature_reference_name(split: str) -> str:
    """The reference name of features cut after ``split`` (``"features@blocks.2"``)."""
    return f"{FEATURES}@{split}"


def input_name(decoded: np.ndarray | FeatureMaps) -> str:
    """Which kind of input a decoded item is: ``"image"`` or ``"features@<split>"``."""
    if isinstance(decoded, FeatureMaps):
        split = decoded.meta.get("split")
        if not split:
            raise EvaluatorError("decoded features carry no split in their meta: the tail to run is unknown")
        return feature_reference_name(str(split))
    return IMAGE


def portable(features: FeatureMaps) -> FeatureMaps:
    """The same features with numpy tensors: cheap to send between processes (no torch storage sharing)."""
    tensors = {
        name: t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        for name, t in features.tensors.items()
    }
    return FeatureMaps(
        tensors=tensors, strides=dict(features.strides), image_size=tuple(features.image_size), meta=dict(features.meta)
    )


def _probe_image(side: int = 64) -> np.ndarray:
    """A small smooth colour image: what a feature codec is asked to code to reveal its backbone."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    return np.clip(np.stack([64 + 128 * xx, 64 + 128 * yy, 192 - 96 * xx * yy], axis=2), 0, 255).astype(np.uint8)


def probe_feature_codec(codec: Codec, quality: int) -> FeatureMaps:
    """Code and decode a small synthetic image: the decoded meta says which backbone, split and head the
    codec's streams carry (what a receiver checks), without touching any benchmark image."""
    try:
        decoded = codec.decode(codec.encode(_probe_image(), quality))
    except IcmError as exc:
        raise EvaluatorError(f"codec {codec.name!r} (quality {quality}): {exc}") from None
    if not isinstance(decoded, FeatureMaps):
        raise EvaluatorError(f"codec {codec.name!r} is of kind 'feature' but decodes {type(decoded).__name__}")
    missing = [k for k in ("backbone", "split", "head_digest") if not decoded.meta.get(k)]
    if missing or FEATURES not in decoded.tensors:
        raise EvaluatorError(
            f"codec {codec.name!r} decodes features without {', '.join(missing) or 'a tensor'} "
            f"{'in their meta' if missing else 'named features'}: no tail can be chosen for them"
        )
    return decoded


class Evaluator(ABC):
    """The protocol every task's evaluator follows (see the module docstring)."""

    task: str = ""
    record_columns: tuple[str, ...] = ()  # the result-row columns its records fill
    sidecar: str | None = None  # else: records are JSON lines in this folder of the run (per codec × quality)
    crops_input: bool = False  # whether codecs get the benchmark's resize + centre crop (else the whole image)
    detection_size: tuple[int, int] | None = None  # feature codecs code in the detection geometry of this size

    def check_codec(self, codec: Codec, qualities: Iterable[int]) -> None:
        """Refuse (:class:`EvaluatorError`) a codec whose decoded output this evaluator cannot score."""
        if codec.kind == CodecKind.FEATURE:
            raise EvaluatorError(
                f"codec {codec.name!r} decodes features, not pixels: {FEATURE_CODECS_SERVE}; "
                f"leave it out of --codecs for --task {self.task}"
            )

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    @abstractmethod
    def update(self, keys: Sequence[str], decoded: Sequence[np.ndarray | FeatureMaps]) -> list[dict]:
        """Score decoded items (the task model runs here), accumulate them, return one record per item."""

    @abstractmethod
    def update_from_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Accumulate records that :meth:`update` returned earlier (read back from result files)."""

    @abstractmethod
    def compute(self) -> dict[str, float | str]:
        """Set-level metrics of everything accumulated ("" for a metric without values)."""

    # -- references: the task model on uncompressed inputs (none by default) -----------------------------
    def reference_names(self) -> list[str]:
        return []

    def uncompressed(self, images: Sequence[np.ndarray], name: str) -> list[np.ndarray | FeatureMaps]:
        """The uncompressed counterpart of reference ``name`` for each image (the image itself, or features)."""
        if name != IMAGE:
            raise EvaluatorError(f"{self.task} has no reference {name!r}")
        return list(images)

    def reference(self, keys: Sequence[str], images: Sequence[np.ndarray]) -> list[dict]:
        """Score every reference on the uncompressed images; records carry ``key`` and ``reference``."""
        return []

    def restore_reference(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Take back reference records saved by an earlier (interrupted) run (none by default)."""
        return None

    def feature_window(self, features: FeatureMaps) -> tuple[int, int, int, int] | None:
        """``(top, left, height, width)`` of the part of a feature map the task model sees, in feature samples."""
        return None


def _flag(value: Any) -> int | None:
    """A saved 0/1 metric ("" or missing: None)."""
    if value in ("", None):
        return None
    number = float(value)
    return None if math.isnan(number) else int(number)


class ClassificationEvaluator(Evaluator):
    """Top-1 / top-5 against ImageNet labels and top-1 agreement with the uncompressed input's prediction.

    Decoded images go through the classifier with its own preprocessing; decoded :class:`FeatureMaps`
    go through the tail of the same classifier, split where the features were cut, on the centre window
    of :meth:`feature_window`. Records: ``pred`` (top-1 class), ``top1``, ``top5``, ``agree`` (0/1; ``agree``
    compares with the uncompressed input of the same kind — the image for pixel codecs, the head's
    features of that image for feature codecs; empty without a reference).

    Args:
        classifier (Classifier): The :class:`~icmkit.pretrained.classifiers.Classifier` that scores (split
            here for features).
        labels: The ImageNet class index of each sample, by sample key.
        k: How many classes are predicted per image; ``top5`` counts the label among them.
        batch_size: Images per classifier batch.
    """

    task = "classify"
    record_columns = ("pred", "top1", "top5", "agree")
    crops_input = True

    def __init__(self, classifier, labels: Mapping[str, int], k: int = 5, batch_size: int = 32):
        self.classifier = classifier
        self.labels = dict(labels)
        self.k = k
        self.batch_size = batch_size
        self._splits: dict[str, Any] = {}  # split stage → SplitBackbone sharing the classifier's modules
        self._feature_names: list[str] = []  # references of the feature codecs checked
        self._checked: set[tuple[str, int]] = set()
        self._reference: dict[str, dict[str, int]] = {}  # reference name → key → top-1 class
        self.reset()

    # -- codecs --------------------------------------------------------------------------------------
    def split(self, stage: str):
        """The classifier split after ``stage`` (its own modules: head and tail, no copy)."""
        if stage not in self._splits:
            from icmkit.backbones import SplitBackbone

            cfg = self.classifier.preprocess_config
            self._splits[stage] = SplitBackbone(self.classifier.name, self.classifier.model, stage, cfg.mean, cfg.std)
        return self._splits[stage]

    def check_codec(self, codec: Codec, qualities: Iterable[int]) -> None:
        if codec.kind != CodecKind.FEATURE:
            return
        for quality in qualities:
            if (codec.name, quality) in self._checked:
                continue
            meta = probe_feature_codec(codec, quality).meta
            mine = self.classifier.name
            receiver = f"the benchmark's classifier {mine}"
            remedy = f": run with --model {meta.get('backbone')} or leave {codec.name} out"
            check_backbone(meta, mine, receiver, EvaluatorError, remedy)
            stage = str(meta["split"])
            try:
                info = self.split(stage).info
            except IcmError as exc:
                raise EvaluatorError(f"codec {codec.name!r}: cannot split {mine} after {stage} ({exc})") from None
            info.check_features(
                meta, receiver, EvaluatorError, f": use the weights {codec.name} was trained on or leave it out"
            )
            self._checked.add((codec.name, quality))
            name = feature_reference_name(stage)
            if name not in self._feature_names:
                self._feature_names.append(name)

    # -- the protocol -----------------------------------------------------------------------------------
    def reset(self) -> None:
        self._sums = {"top1": [0, 0], "top5": [0, 0], "agree": [0, 0]}  # metric → [hits, count]

    def update(self, keys: Sequence[str], decoded: Sequence[np.ndarray | FeatureMaps]) -> list[dict]:
        keys, decoded = list(keys), list(decoded)
        if len(keys) != len(decoded):
            raise ValueError("update needs one key per decoded item")
        top = self._topk(decoded)
        records = []
        for key, item, predicted in zip(keys, decoded, top):
            reference = self._reference.get(input_name(item), {}).get(key)
            agree = "" if reference is None else int(predicted[0] == reference)
            records.append(self._record(key, predicted, agree))
        self.update_from_records(records)
        return records

    def update_from_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            for metric, tally in self._sums.items():
                value = _flag(record.get(metric, ""))
                if value is not None:
                    tally[0] += value
                    tally[1] += 1

    def compute(self) -> dict[str, float | str]:
        return {metric: 100.0 * hits / count if count else "" for metric, (hits, count) in self._sums.items()}

    # -- references ---------------------------------------------------------------------------------------
    def reference_names(self) -> list[str]:
        return [IMAGE, *self._feature_names]

    def uncompressed(self, images: Sequence[np.ndarray], name: str) -> list[np.ndarray | FeatureMaps]:
        if name == IMAGE:
            return list(images)
        prefix, _, stage = name.partition("@")
        if prefix != FEATURES or not stage:
            raise EvaluatorError(f"classification has no reference {name!r}")
        return self.head_features(images, stage)

    def head_features(self, images: Sequence[np.ndarray], stage: str) -> list[FeatureMaps]:
        """The classifier's own head features (after ``stage``) of whole images, as a feature codec's
        decoder would return them uncompressed (numpy tensors ``(1, C, ceil(H/s), ceil(W/s))``)."""
        from icmkit.backbones.split import images_to_batch

        split = self.split(stage)
        info = split.info
        out: list[FeatureMaps | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(i)
        device = self.classifier.device
        for shape, indices in by_shape.items():
            for start in range(0, len(indices), self.batch_size):
                part = indices[start : start + self.batch_size]
                with torch.inference_mode():
                    features = split.features(images_to_batch([images[i] for i in part]).to(device)).float().cpu()
                for j, i in enumerate(part):
                    out[i] = FeatureMaps(
                        tensors={FEATURES: features[j : j + 1].numpy()},
                        strides={FEATURES: info.stride},
                        image_size=(shape[0], shape[1]),
                        meta={
                            "backbone": info.backbone,
                            "split": info.stage,
                            "head_digest": info.head_digest.hex(),
                            "stride": info.stride,
                        },
                    )
        return out

    def reference(self, keys: Sequence[str], images: Sequence[np.ndarray]) -> list[dict]:
        """Records of every reference (``key``, ``reference`` plus the usual fields); ``agree`` of a
        feature reference compares it with the image's prediction (empty for the image itself)."""
        keys = list(keys)
        image_top = self._topk(list(images))
        records = []
        for name in self.reference_names():
            top = image_top if name == IMAGE else self._topk(self.uncompressed(images, name))
            table = self._reference.setdefault(name, {})
            for key, predicted, on_image in zip(keys, top, image_top):
                table[key] = int(predicted[0])
                agree = "" if name == IMAGE else int(predicted[0] == on_image[0])
                records.append({"key": key, "reference": name, **self._record(key, predicted, agree)})
        return records

    def restore_reference(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            if record.get("pred", "") != "":
                self._reference.setdefault(str(record["reference"]), {})[str(record["key"])] = int(record["pred"])

    def feature_window(self, features: FeatureMaps) -> tuple[int, int, int, int]:
        """The centre window of the feature map that corresponds to the classifier's crop of the image.

        The classifier resizes an ``H×W`` image by ``resize_size`` (shorter side, or exact ``(h, w)``) and
        centre-crops ``crop_size``; that crop covers ``crop / scale`` image pixels, i.e.
        ``round(crop / scale / stride)`` feature samples, centred as torchvision centres its crop.
        """
        tensor = features.tensors[FEATURES]
        height, width = int(tensor.shape[-2]), int(tensor.shape[-1])
        stride = int(features.strides.get(FEATURES) or features.meta.get("stride") or 1)
        image_h, image_w = (int(v) for v in features.image_size)
        cfg = self.classifier.preprocess_config
        if isinstance(cfg.resize_size, int):
            scale_h = scale_w = cfg.resize_size / min(image_h, image_w)
        else:
            scale_h, scale_w = cfg.resize_size[0] / image_h, cfg.resize_size[1] / image_w
        crop_h = min(height, max(1, round(cfg.crop_size[0] / scale_h / stride)))
        crop_w = min(width, max(1, round(cfg.crop_size[1] / scale_w / stride)))
        return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0)), crop_h, crop_w

    # -- internals ------------------------------------------------------------------------------------------
    def _record(self, key: str, predicted: np.ndarray, agree: int | str) -> dict:
        if key not in self.labels or self.labels[key] is None:
            raise EvaluatorError(f"{key}: no class label to score against")
        label = self.labels[key]
        return {
            "pred": int(predicted[0]),
            "top1": int(predicted[0] == label),
            "top5": int(label in predicted),
            "agree": agree,
        }

    def _topk(self, decoded: list[np.ndarray | FeatureMaps]) -> np.ndarray:
        """Top-k class indices ``(N, k)``: images through the classifier, features through its tail."""
        logits: list[np.ndarray | None] = [None] * len(decoded)
        images = [i for i, item in enumerate(decoded) if not isinstance(item, FeatureMaps)]
        if images:
            for i, row in zip(images, self.classifier.predict([decoded[i] for i in images], self.batch_size)):
                logits[i] = row
        by_stage: dict[str, list[int]] = {}
        for i, item in enumerate(decoded):
            if isinstance(item, FeatureMaps):
                by_stage.setdefault(input_name(item).partition("@")[2], []).append(i)
        for stage, indices in by_stage.items():
            for i, row in zip(indices, self._tail_logits(stage, [decoded[i] for i in indices])):
                logits[i] = row
        if not decoded:
            return np.zeros((0, self.k), np.int64)
        table = torch.from_numpy(np.stack(logits))
        return torch.topk(table, k=min(self.k, table.shape[1]), dim=1).indices.numpy()

    def _tail_input(self, features: FeatureMaps, stage: str) -> torch.Tensor:
        info = self.split(stage).info
        meta = features.meta
        if meta.get("backbone") not in (None, info.backbone) or meta.get("head_digest") not in (
            None,
            info.head_digest.hex(),
        ):
            raise EvaluatorError(
                f"features of {meta.get('backbone')} (head {meta.get('head_digest')}) cannot go "
                f"through the tail of {info.backbone} (head {info.head_digest.hex()})"
            )
        if FEATURES not in features.tensors:
            raise EvaluatorError(f"expected a feature tensor named {FEATURES!r}, found {', '.join(features.tensors)}")
        value = features.tensors[FEATURES]
        tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        tensor = tensor.to("cpu", torch.float32)
        stride = features.strides.get(FEATURES)
        if (
            tensor.ndim != 4
            or tensor.shape[0] != 1
            or tensor.shape[1] != info.channels
            or (stride is not None and int(stride) != info.stride)
        ):
            raise EvaluatorError(
                f"features of shape {tuple(tensor.shape)} at stride {stride} do not fit "
                f"{info.backbone} after {stage} ((1, {info.channels}, h, w) at stride {info.stride})"
            )
        top, left, height, width = self.feature_window(features)
        return tensor[:, :, top : top + height, left : left + width]

    def _tail_logits(self, stage: str, items: list[FeatureMaps]) -> list[np.ndarray]:
        tail = self.split(stage).tail
        device = self.classifier.device
        inputs = [self._tail_input(item, stage) for item in items]
        rows: list[np.ndarray] = []
        start = 0
        while start < len(inputs):  # batches of equal-shaped windows, in order
            end = start + 1
            while end < len(inputs) and end - start < self.batch_size and inputs[end].shape == inputs[start].shape:
                end += 1
            with torch.inference_mode():
                out = tail(torch.cat(inputs[start:end]).to(device)).float().cpu().numpy()
            rows += list(out)
            start = end
        return rows


class DetectionEvaluator(Evaluator):
    """COCO box mAP (``detect``) or mask mAP (``segment``) of a torchvision detector, via pycocotools.

    Records (kept as JSON lines in the run's ``detections/`` folder): ``image_id`` and the image's COCO
    results ``records``. :meth:`compute` gives ``map`` / ``map50`` in % (of masks for ``segment``).

    Args:
        detector (Detector): The :class:`~icmkit.pretrained.detectors.Detector` that scores (split after
            layer1 for features).
        annotations: The COCO instances JSON (ground truth) of the dataset.
        image_ids: The COCO image id of each sample, by sample key.
        segm: Score masks (``segment``; a mask model) instead of boxes (``detect``).
    """

    sidecar = "detections"

    def __init__(self, detector, annotations: str | Path, image_ids: Mapping[str, int], segm: bool = False):
        from icmkit.tasks.detection import CocoEvaluator

        self.task = "segment" if segm else "detect"
        self.detector = detector
        self.image_ids = dict(image_ids)
        self.segm = segm
        self.coco = CocoEvaluator(annotations, segm=segm)
        transform = detector.model.transform
        self.detection_size = (int(transform.min_size[-1]), int(transform.max_size))
        self._split = None

    def split(self):
        """The detector cut after layer1 (built on first use; v1 models only)."""
        if self._split is None:
            from icmkit.backbones import SplitError
            from icmkit.backbones.detection import SplitDetector

            try:
                self._split = SplitDetector(self.detector)
            except SplitError as exc:
                raise EvaluatorError(str(exc)) from None
        return self._split

    def check_codec(self, codec: Codec, qualities: Iterable[int]) -> None:
        if codec.kind != CodecKind.FEATURE:
            return
        meta = probe_feature_codec(codec, min(qualities)).meta
        remedy = f": leave {codec.name} out of --codecs for --task {self.task}"
        self.split().info.check_features(meta, self.detector.name, EvaluatorError, remedy)

    def uncompressed(self, images: Sequence[np.ndarray], name: str) -> list[np.ndarray | FeatureMaps]:
        if name == IMAGE:
            return list(images)
        info = self.split().info
        if name != feature_reference_name(info.stage):
            raise EvaluatorError(f"{self.task} has no reference {name!r}")
        meta = {"backbone": info.backbone, "split": info.stage, "head_digest": info.head_digest.hex()}
        maps = []
        for image in images:
            features, geometry = self.split().features(image)
            maps.append(FeatureMaps.of_split(features, geometry.original, info.stride, meta, geometry))
        return maps

    def reset(self) -> None:
        self.coco.reset()

    def update(self, keys: Sequence[str], decoded: Sequence[np.ndarray | FeatureMaps]) -> list[dict]:
        from icmkit.tasks.detection import detections_to_json

        images = [i for i, item in enumerate(decoded) if not isinstance(item, FeatureMaps)]
        predictions: list[Any] = [None] * len(decoded)
        # Batches of 1: no padding shared between images.
        for i, prediction in zip(images, self.detector.predict([decoded[i] for i in images], batch_size=1)):
            predictions[i] = prediction
        for i, item in enumerate(decoded):
            if isinstance(item, FeatureMaps):
                predictions[i] = self._detect_features(item)
        entries = []
        for key, prediction in zip(keys, predictions):
            if key not in self.image_ids:
                raise EvaluatorError(f"{key}: not an image of the COCO annotations")
            image_id = self.image_ids[key]
            entries.append({"image_id": image_id, "records": detections_to_json(image_id, prediction)})
        self.update_from_records(entries)
        return entries

    def _detect_features(self, features: FeatureMaps) -> dict[str, Any]:
        from icmkit.geometry import DetectionGeometry

        resized = features.meta.get("resized")
        if resized is None:
            raise EvaluatorError(
                f"{self.task}: features coded without the detector's resize (classifier or full geometry)"
            )
        value = features.tensors[FEATURES]
        tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        geometry = DetectionGeometry(tuple(features.image_size), tuple(resized))
        return self.split().predict(tensor.to("cpu", torch.float32), geometry)

    def update_from_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        entries = list(records)
        self.coco.update_from_json(
            [r for entry in entries for r in entry["records"]], image_ids=[entry["image_id"] for entry in entries]
        )

    def compute(self) -> dict[str, float | str]:
        result = self.coco.compute()
        prefix = "segm_" if self.segm else ""
        return {"map": result[f"{prefix}map"], "map50": result[f"{prefix}map50"]}


class FidelityEvaluator(Evaluator):
    """No task model: rows keep only rate and fidelity (PSNR, MS-SSIM of the decoded pixels)."""

    task = "fidelity"

    def reset(self) -> None:
        pass

    def update(self, keys: Sequence[str], decoded: Sequence[np.ndarray | FeatureMaps]) -> list[dict]:
        if any(isinstance(item, FeatureMaps) for item in decoded):
            raise EvaluatorError(f"fidelity scores decoded pixels: {FEATURE_CODECS_SERVE}")
        return [{} for _ in keys]

    def update_from_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        pass

    def compute(self) -> dict[str, float | str]:
        return {}
