"""Scoring detections on COCO (``icm bench``'s detect / segment tasks): results to COCO JSON, and
:class:`CocoEvaluator` (pycocotools box mAP, and mask mAP for the Mask R-CNN models) against an instances JSON.

The detectors themselves (:func:`load_detector`, :class:`Detector`, :data:`DETECTORS`) are loaded by
:mod:`icmkit.pretrained.detectors`, below the backbones that split them; they are re-exported here, where they
were defined before.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from icmkit.errors import IcmError, one_line
from icmkit.pretrained.detectors import (  # noqa: F401 (re-exported)
    DETECTORS,
    NUM_CLASSES,
    Detector,
    DetectorInfo,
    DetectorWeightsError,
    UnknownDetectorError,
    _rle_to_json,
    encode_masks,
    load_detector,
)


class CocoEvaluationError(IcmError):
    """A COCO instances file or detection results that cannot be scored."""


def detections_to_json(image_id: int, prediction: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One image's prediction (as :meth:`Detector.predict` returns it) → COCO results records.

    Each record: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score`` and, when the
    prediction has ``masks`` (RLE dicts or an (N, H, W) binary array), ``segmentation`` (RLE, str counts).
    """
    boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(prediction["scores"], dtype=np.float64).reshape(-1)
    labels = np.asarray(prediction["labels"]).reshape(-1)
    masks = prediction.get("masks")
    if masks is not None and not isinstance(masks, (list, tuple)):
        masks = encode_masks(np.asarray(masks) > 0.5 if np.asarray(masks).dtype.kind == "f" else np.asarray(masks))
    counts = {len(boxes), len(scores), len(labels)} | ({len(masks)} if masks is not None else set())
    if len(counts) != 1:
        raise CocoEvaluationError(f"image {image_id}: boxes, scores, labels (and masks) differ in length")
    records = []
    for i in range(len(boxes)):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        record = {
            "image_id": int(image_id),
            "category_id": int(labels[i]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
        }
        if masks is not None:
            record["segmentation"] = _rle_to_json(masks[i])
        records.append(record)
    return records


class CocoEvaluator:
    """COCO mAP of detections against an instances JSON, over the images that were updated.

    Protocol: :meth:`reset`, :meth:`update` per image (or :meth:`update_from_json` with saved records),
    :meth:`compute`. ``compute()`` gives ``map`` (AP@[.50:.95]) and ``map50`` (AP@.50) for boxes in
    percent and, when masks were given, ``segm_map`` / ``segm_map50``; ``images`` is the number of images
    scored. Only the updated image ids are evaluated (``COCOeval.params.imgIds``), so an updated image
    without detections counts its ground truth as missed.

    Args:
        annotations: The COCO instances JSON (ground truth) of the images.
        segm: Whether to evaluate masks: ``None`` when any update had them, ``True`` always (NaN when none),
            ``False`` never.
    """

    def __init__(self, annotations: str | os.PathLike, segm: bool | None = None):
        from pycocotools.coco import COCO

        path = Path(annotations)
        if not path.is_file():
            raise CocoEvaluationError(f"{path}: no such COCO instances file")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco = COCO(str(path))
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError, UnicodeDecodeError) as exc:
            raise CocoEvaluationError(f"{path}: not a COCO instances file ({one_line(exc)})") from None
        if not all(isinstance(self.coco.dataset.get(key), list) for key in ("images", "annotations", "categories")):
            raise CocoEvaluationError(f"{path}: not a COCO instances file (needs images, annotations, categories)")
        self.annotations = path
        self.segm = segm
        self.reset()

    def reset(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._image_ids: set[int] = set()
        self._saw_masks = False

    def update(self, image_id: int, prediction: Mapping[str, Any]) -> None:
        """Add one image's prediction (``boxes`` xyxy, ``scores``, ``labels``, optional ``masks``)."""
        image_id = self._check_image_id(image_id)
        records = detections_to_json(image_id, prediction)
        self._saw_masks |= prediction.get("masks") is not None
        self._records += records
        self._image_ids.add(image_id)

    def update_from_json(self, records: Iterable[Mapping[str, Any]], image_ids: Iterable[int] | None = None) -> None:
        """Add saved COCO results records (e.g. :func:`detections_to_json` output read back from JSON lines).

        ``image_ids``: the images the records come from, including those with no detection (which have
        no record); by default the image ids found in ``records``.
        """
        new = []
        for index, record in enumerate(records):
            try:
                item = {
                    "image_id": self._check_image_id(record["image_id"]),
                    "category_id": int(record["category_id"]),
                    "bbox": [float(v) for v in record["bbox"]],
                    "score": float(record["score"]),
                }
            except (KeyError, TypeError, ValueError) as exc:
                raise CocoEvaluationError(f"record {index}: not a COCO detection result ({one_line(exc)})") from None
            if len(item["bbox"]) != 4:
                raise CocoEvaluationError(f"record {index}: bbox must be [x, y, w, h]")
            if record.get("segmentation") is not None:
                item["segmentation"] = self._to_rle(record["segmentation"], item["image_id"], index)
                self._saw_masks = True
            new.append(item)
        ids = {r["image_id"] for r in new} if image_ids is None else {self._check_image_id(i) for i in image_ids}
        self._records += new
        self._image_ids |= ids | {r["image_id"] for r in new}

    def compute(self) -> dict[str, float]:
        segm = self._saw_masks if self.segm is None else self.segm
        keys = ["map", "map50"] + (["segm_map", "segm_map50"] if segm else [])
        if not self._image_ids:
            return {key: math.nan for key in keys} | {"images": 0}
        result = dict(zip(["map", "map50"], self._evaluate("bbox", "segmentation")))
        if segm:
            missing = sum("segmentation" not in r for r in self._records)
            if missing:
                raise CocoEvaluationError(f"{missing} of {len(self._records)} detections have no mask to score")
            result |= dict(zip(["segm_map", "segm_map50"], self._evaluate("segm", "bbox")))
        return result | {"images": len(self._image_ids)}

    def _evaluate(self, iou_type: str, drop: str) -> tuple[float, float]:
        from pycocotools.cocoeval import COCOeval

        # Each type is scored on its own records (Detectron2's way): masks without boxes get the mask area.
        records = [{k: copy.copy(v) for k, v in r.items() if k != drop} for r in self._records]
        with contextlib.redirect_stdout(io.StringIO()):
            results = self.coco.loadRes(records) if records else self._empty_results()
            evaluation = COCOeval(self.coco, results, iou_type)
            evaluation.params.imgIds = sorted(self._image_ids)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        return tuple(float(v) * 100.0 if v >= 0 else math.nan for v in evaluation.stats[:2])

    def _empty_results(self):
        from pycocotools.coco import COCO

        results = COCO()
        results.dataset = {
            "images": list(self.coco.dataset["images"]),
            "categories": copy.deepcopy(self.coco.dataset["categories"]),
            "annotations": [],
        }
        results.createIndex()
        return results

    def _check_image_id(self, image_id: Any) -> int:
        try:
            value = int(image_id)
        except (TypeError, ValueError):
            raise CocoEvaluationError(f"image id {image_id!r} is not an integer") from None
        if value not in self.coco.imgs:
            raise CocoEvaluationError(f"image id {value} is not in {self.annotations.name}")
        return value

    def _to_rle(self, segmentation: Any, image_id: int, index: int) -> dict[str, Any]:
        from pycocotools import mask as mask_utils

        image = self.coco.imgs[image_id]
        height, width = int(image["height"]), int(image["width"])
        try:
            if isinstance(segmentation, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), list):
                rle = mask_utils.frPyObjects(dict(segmentation), height, width)  # uncompressed RLE
            elif isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), (str, bytes)):
                rle = dict(segmentation)
            else:
                raise TypeError(f"unsupported segmentation {type(segmentation).__name__}")
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise CocoEvaluationError(f"record {index}: bad segmentation ({one_line(exc)})") from None
        rle = _rle_to_json(rle)
        if [int(v) for v in rle["size"]] != [height, width]:
            size = [height, width]
            raise CocoEvaluationError(f"record {index}: mask size {rle['size']} is not image {image_id}'s {size}")
        return rle
