"""The split of torchvision's v1 R50-FPN detectors after layer1: exact against the unsplit models, one head with
the ResNet-50 classifier, and — where the real weights are cached — the stems' equality and the eps bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from icmkit.backbones import SplitError, split_classifier
from icmkit.backbones.detection import SplitDetector, stem_agreement
from icmkit.geometry import DetectionGeometry
from icmkit.tasks.detection import load_detector

V1 = ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn"]
# Many low-scoring detections from random weights, so the comparison covers boxes, scores, labels and masks.
LOOSE = {
    "fasterrcnn_resnet50_fpn": {"box_score_thresh": 0.0, "box_detections_per_img": 40},
    "maskrcnn_resnet50_fpn": {"box_score_thresh": 0.0, "box_detections_per_img": 20},
    "retinanet_resnet50_fpn": {"score_thresh": 0.0, "detections_per_img": 60},
}
# The bound on the frozen batch-norm eps (0 in the COCO weights, 1e-5 in the classifier): layer1 outputs of the
# two heads differ by less than this fraction of their largest magnitude.
EPS_BOUND = 1e-3


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", V1)
def test_split_detector_equals_unsplit_model_on_uncompressed_features(name, image):
    detector = load_detector(name, None, min_size=96, max_size=160, **LOOSE[name])
    reference = detector.predict([image], batch_size=1)[0]
    split = SplitDetector(detector)
    features, geometry = split.features(image)
    assert geometry == DetectionGeometry((90, 130), (96, 138))
    assert tuple(features.shape) == (1, 256, *geometry.feature_size(4)) == (1, 256, 24, 40)
    result = split.predict(features, geometry)
    assert len(reference["boxes"]) > 5
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(result[key], reference[key])
    if detector.has_masks:
        assert result["masks"] == reference["masks"]
    # Boxes come back in the original image's coordinates.
    assert result["boxes"][:, [0, 2]].max() <= 130 and result["boxes"][:, [1, 3]].max() <= 90


def test_detector_head_shares_the_classifier_digest_and_features():
    """Seeded random weights mirror the real ones: the v1 detectors' stem is the resnet50 classifier's."""
    classifier = split_classifier("resnet50", "layer1", None)
    detector = SplitDetector(load_detector("fasterrcnn_resnet50_fpn", None, min_size=64, max_size=96))
    assert detector.info.head_digest == classifier.info.head_digest
    assert (
        (detector.info.channels, detector.info.stride) == (classifier.info.channels, classifier.info.stride) == (256, 4)
    )
    agreement = stem_agreement(classifier.head, detector.head, size=64)
    assert agreement.max_weight_difference == 0.0
    assert agreement.relative_output_difference < 1e-5  # random running stats: eps 1e-5 barely matters


def test_other_weights_change_the_digest():
    classifier = split_classifier("resnet50", "layer1", None)
    detector = load_detector("fasterrcnn_resnet50_fpn", None, min_size=64, max_size=96)
    with torch.no_grad():
        detector.model.backbone.body.layer1[0].conv1.weight.mul_(1.01)
    assert SplitDetector(detector).info.head_digest != classifier.info.head_digest


def test_v2_detectors_are_refused():
    with pytest.raises(SplitError, match="no frozen ImageNet stem"):
        SplitDetector(load_detector("fasterrcnn_resnet50_fpn_v2", None, min_size=64, max_size=96))


def test_wrong_feature_shape_is_refused(image):
    split = SplitDetector(load_detector("retinanet_resnet50_fpn", None, min_size=96, max_size=160))
    features, geometry = split.features(image)
    with pytest.raises(SplitError, match="expected layer1 features"):
        split.detect(features[..., :-1], geometry)


def _cached(file_name: str) -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    return path if path.is_file() else None


@pytest.mark.parametrize("name", V1)
def test_real_weights_share_the_stem(name):
    """With torchvision's real weights (resnet50 IMAGENET1K_V1 and the detector's COCO_V1) in the user's cache:
    conv1 + layer1 weights are equal and the eps difference stays under EPS_BOUND."""
    import torchvision.models

    files = [
        torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1],
        torchvision.models.get_model_weights(name).COCO_V1.url.rsplit("/", 1)[-1],
    ]
    missing = [f for f in files if _cached(f) is None]
    if missing:
        pytest.skip(f"torchvision weights not in {torch.hub.get_dir()}/checkpoints: {', '.join(missing)}")
    classifier = split_classifier("resnet50", "layer1", "IMAGENET1K_V1")
    detector = SplitDetector(load_detector(name, "default"))
    agreement = stem_agreement(classifier.head, detector.head)
    assert agreement.max_weight_difference == 0.0
    assert agreement.relative_output_difference < EPS_BOUND
