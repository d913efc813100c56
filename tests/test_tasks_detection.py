"""COCO detection task models: torchvision detectors (random weights, no download) and the pycocotools evaluator."""

from __future__ import annotations

import hashlib
import json
import math
import urllib.error
import warnings

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from safetensors.torch import save_file
from torchvision.ops.misc import FrozenBatchNorm2d

from icmkit.errors import IcmError
from icmkit.pretrained import detectors as detection
from icmkit.tasks.detection import (
    DETECTORS,
    CocoEvaluationError,
    CocoEvaluator,
    Detector,
    DetectorWeightsError,
    UnknownDetectorError,
    detections_to_json,
    load_detector,
)

HEIGHT, WIDTH = 64, 80
SMALL = {"min_size": 64, "max_size": 96, "box_score_thresh": 0.0, "box_detections_per_img": 12}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def downloads(monkeypatch) -> list[str]:
    """Every download torch.hub would start is refused and recorded: tests never touch the network."""
    attempts: list[str] = []

    def refuse(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return attempts


# --- a tiny COCO instances file ------------------------------------------------------------------------


def _rect(x: float, y: float, w: float, h: float) -> list[float]:
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def _ann(ann_id: int, image_id: int, category_id: int, polygon: list[float]) -> dict:
    xs, ys = polygon[0::2], polygon[1::2]
    x, y = min(xs), min(ys)
    bbox = [x, y, max(xs) - x, max(ys) - y]
    area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects([polygon], HEIGHT, WIDTH))))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [polygon],
        "bbox": bbox,
        "area": area,
        "iscrowd": 0,
    }


@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> str:
    document = {
        "images": [
            {"id": 1, "file_name": "one.png", "height": HEIGHT, "width": WIDTH},
            {"id": 2, "file_name": "two.png", "height": HEIGHT, "width": WIDTH},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            _ann(1, 1, 1, _rect(4, 6, 20, 30)),
            _ann(2, 1, 3, [40, 10, 70, 12, 66, 40, 44, 36]),  # quadrilateral
            _ann(3, 2, 3, _rect(10, 20, 30, 24)),
            _ann(4, 2, 1, [50, 5, 75, 30, 50, 55]),  # triangle
            _ann(5, 2, 1, _rect(30, 48, 14, 12)),
        ],
    }
    path = tmp_path_factory.mktemp("coco") / "instances_tiny.json"
    path.write_text(json.dumps(document))
    return str(path)


def _ground_truth(instances: str, image_id: int, shift: float = 0.0) -> dict:
    """The image's annotations as a perfect prediction (score 1), boxes moved ``shift`` pixels."""
    coco = COCO(instances)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    boxes = np.array([[x + shift, y + shift, x + w + shift, y + h + shift] for x, y, w, h in (a["bbox"] for a in anns)])
    return {
        "boxes": boxes.astype(np.float32),
        "scores": np.ones(len(anns), np.float32),
        "labels": np.array([a["category_id"] for a in anns], np.int64),
        "masks": [coco.annToRLE(a) for a in anns],
    }


# --- evaluator -----------------------------------------------------------------------------------------


def test_ground_truth_scores_100(instances):
    evaluator = CocoEvaluator(instances)
    for image_id in (1, 2):
        evaluator.update(image_id, _ground_truth(instances, image_id))
    result = evaluator.compute()
    assert set(result) == {"map", "map50", "segm_map", "segm_map50", "images"}
    for key in ("map", "map50", "segm_map", "segm_map50"):
        assert result[key] == pytest.approx(100.0)
    assert result["images"] == 2


def test_shifted_boxes_score_lower(instances):
    evaluator = CocoEvaluator(instances)
    for image_id in (1, 2):
        prediction = _ground_truth(instances, image_id, shift=6.0)
        del prediction["masks"]
        evaluator.update(image_id, prediction)
    result = evaluator.compute()
    assert set(result) == {"map", "map50", "images"}  # no masks given: boxes only
    assert result["map"] < 60.0


def test_no_update_gives_nan(instances):
    evaluator = CocoEvaluator(instances)
    assert all(math.isnan(v) for k, v in evaluator.compute().items() if k != "images")
    assert set(CocoEvaluator(instances, segm=True).compute()) == {"map", "map50", "segm_map", "segm_map50", "images"}
    evaluator.update(1, _ground_truth(instances, 1))
    evaluator.reset()
    assert math.isnan(evaluator.compute()["map"])


def test_only_updated_images_count(instances):
    evaluator = CocoEvaluator(instances)
    evaluator.update(1, _ground_truth(instances, 1))
    assert evaluator.compute()["map"] == pytest.approx(100.0)  # image 2's annotations are not missed
    empty = {
        "boxes": np.zeros((0, 4), np.float32),
        "scores": np.zeros(0, np.float32),
        "labels": np.zeros(0, np.int64),
        "masks": [],
    }
    evaluator.update(2, empty)  # an image without detections: its ground truth is missed
    result = evaluator.compute()
    assert result["images"] == 2 and result["map"] < 60.0 and result["segm_map"] < 60.0
    evaluator.reset()
    evaluator.update(2, empty)
    assert evaluator.compute()["map"] == pytest.approx(0.0)  # no detection at all


def test_saved_json_lines_score_the_same(instances, tmp_path):
    direct = CocoEvaluator(instances)
    lines = []
    for image_id, shift in ((1, 2.0), (2, 3.0)):
        prediction = _ground_truth(instances, image_id, shift)
        direct.update(image_id, prediction)
        lines += [json.dumps(record) for record in detections_to_json(image_id, prediction)]
    path = tmp_path / "detections.jsonl"
    path.write_text("\n".join(lines) + "\n")
    later = CocoEvaluator(instances)
    later.update_from_json(json.loads(line) for line in path.read_text().splitlines())
    assert later.compute() == direct.compute()
    record = json.loads(lines[0])
    assert set(record) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    assert record["bbox"] == pytest.approx([4 + 2.0, 6 + 2.0, 20, 30])
    assert isinstance(record["segmentation"]["counts"], str)


def test_polygon_results_and_declared_empty_images(instances):
    coco = COCO(instances)
    records = [{**ann, "score": 1.0} for ann in coco.loadAnns(coco.getAnnIds(imgIds=[1]))]  # polygon segmentations
    evaluator = CocoEvaluator(instances)
    evaluator.update_from_json(records)
    assert evaluator.compute()["segm_map"] == pytest.approx(100.0)
    evaluator.update_from_json([], image_ids=[2])  # image 2 was run and found nothing
    assert evaluator.compute()["segm_map"] < 60.0


def test_evaluator_errors(instances, tmp_path):
    evaluator = CocoEvaluator(instances)
    with pytest.raises(CocoEvaluationError, match="image id 7 is not in"):
        evaluator.update(7, _ground_truth(instances, 1))
    with pytest.raises(CocoEvaluationError, match="record 0"):
        evaluator.update_from_json([{"image_id": 1, "bbox": [0, 0, 1, 1]}])
    evaluator = CocoEvaluator(instances, segm=True)
    prediction = _ground_truth(instances, 1)
    del prediction["masks"]
    evaluator.update(1, prediction)
    with pytest.raises(CocoEvaluationError, match="no mask"):
        evaluator.compute()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(IcmError, match="not a COCO instances file"):
        CocoEvaluator(tmp_path / "bad.json")
    with pytest.raises(IcmError):
        CocoEvaluator(tmp_path / "missing.json")


# --- detectors (random weights, tiny images) -----------------------------------------------------------


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), rng.integers(0, 256, (48, 70, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def faster() -> Detector:
    torch.manual_seed(0)
    return load_detector("fasterrcnn_resnet50_fpn", weights=None, **SMALL)


@pytest.fixture(scope="module")
def mask() -> Detector:
    torch.manual_seed(1)
    return load_detector("maskrcnn_resnet50_fpn", weights=None, **SMALL)


def _check_structure(detector: Detector, predictions: list[dict], images: list[np.ndarray]) -> None:
    assert len(predictions) == len(images)
    for prediction, image in zip(predictions, images):
        height, width = image.shape[:2]
        n = len(prediction["scores"])
        assert 0 < n <= SMALL["box_detections_per_img"]
        assert prediction["boxes"].shape == (n, 4) and prediction["boxes"].dtype == np.float32
        assert prediction["scores"].dtype == np.float32 and np.all(np.diff(prediction["scores"]) <= 0)
        labels = prediction["labels"]
        assert labels.dtype == np.int64 and np.all((labels >= 1) & (labels <= 90))
        boxes = prediction["boxes"]
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= width) and np.all(boxes[:, 3] <= height)
        assert ("masks" in prediction) == detector.has_masks
        if detector.has_masks:
            assert len(prediction["masks"]) == n
            for rle in prediction["masks"]:
                assert rle["size"] == [height, width] and isinstance(rle["counts"], str)
                with warnings.catch_warnings():  # pycocotools' decode trips a numpy 2 DeprecationWarning
                    warnings.simplefilter("ignore", DeprecationWarning)
                    assert mask_utils.decode(rle).shape == (height, width)
        json.dumps(detections_to_json(1, prediction))


def test_faster_rcnn_predicts(faster, downloads):
    images = _images()
    assert not faster.has_masks and not faster.model.training
    assert not any(p.requires_grad for p in faster.model.parameters())
    assert isinstance(faster.model.backbone.body.layer1[0].bn1, FrozenBatchNorm2d)  # as torchvision's COCO model
    _check_structure(faster, faster.predict(images), images)
    assert faster.predict([]) == [] and downloads == []


def test_mask_rcnn_predicts_rle_masks_and_scores(mask, instances, downloads):
    images = _images()[:1] * 2
    predictions = mask.predict(images, batch_size=1)
    _check_structure(mask, predictions, images)
    evaluator = CocoEvaluator(instances)
    for image_id, prediction in zip((1, 2), predictions):
        evaluator.update(image_id, prediction)
    result = evaluator.compute()
    assert 0.0 <= result["map"] <= 100.0 and 0.0 <= result["segm_map"] <= 100.0
    assert downloads == []


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_state_dict_round_trips(faster, tmp_path, suffix, downloads):
    state = {k: v.contiguous().clone() for k, v in faster.model.state_dict().items()}
    path = tmp_path / f"detector{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    torch.manual_seed(123)  # other random weights before loading: the file must replace all of them
    loaded = load_detector("fasterrcnn_resnet50_fpn", weights=path, **SMALL)
    assert loaded.weights == str(path)
    images = _images()
    for a, b in zip(faster.predict(images), loaded.predict(images)):
        for key in ("boxes", "scores", "labels"):
            np.testing.assert_array_equal(a[key], b[key])
    assert downloads == []


def test_weights_that_do_not_fit(mask, tmp_path):
    path = tmp_path / "mask.pth"
    torch.save(mask.model.state_dict(), path)
    with pytest.raises(DetectorWeightsError, match="do not fit fasterrcnn_resnet50_fpn.*unexpected keys") as info:
        load_detector("fasterrcnn_resnet50_fpn", weights=path, min_size=64, max_size=96)
    assert "\n" not in str(info.value)
    with pytest.raises(DetectorWeightsError, match="no such weights file"):
        load_detector("fasterrcnn_resnet50_fpn", weights=tmp_path / "missing.pth")


def test_torchvision_file_gets_torchvision_eps(faster, tmp_path, monkeypatch):
    path = tmp_path / "copy.pth"
    torch.save(faster.model.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]

    class Official:  # the DEFAULT enum, as if this file were its download
        url = f"https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-{digest}.pth"

    monkeypatch.setattr(detection, "_default_enum", lambda name: Official)
    loaded = load_detector("fasterrcnn_resnet50_fpn", weights=path, min_size=64, max_size=96)
    eps = {m.eps for m in loaded.model.modules() if isinstance(m, FrozenBatchNorm2d)}
    assert eps == {0.0}
    assert {m.eps for m in faster.model.modules() if isinstance(m, FrozenBatchNorm2d)} == {1e-5}


def test_unknown_name_lists_supported():
    with pytest.raises(UnknownDetectorError, match="supported: fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn") as info:
        load_detector("yolo")
    assert isinstance(info.value, IcmError) and "\n" not in str(info.value)
    with_masks = {name for name, spec in DETECTORS.items() if spec.has_masks}
    assert with_masks == {"maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"}


def test_default_weights_offline_is_one_line_error(tmp_path, monkeypatch, downloads):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: torchvision must download
    with pytest.raises(DetectorWeightsError) as info:
        load_detector("retinanet_resnet50_fpn", min_size=64, max_size=96)
    message = str(info.value)
    assert "\n" not in message and "not available offline" in message
    assert "retinanet_resnet50_fpn_coco-eeacb38b.pth" in message and str(tmp_path) in message
    assert downloads == ["https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth"]
