"""Split a torchvision v1 R50-FPN detector after ``layer1``: the sender's head, the receiver's detector tail.

torchvision trains its v1 COCO detectors (Faster R-CNN, Mask R-CNN, RetinaNet; R50-FPN) with ``conv1`` and
``layer1`` frozen at the ImageNet ``IMAGENET1K_V1`` classifier's weights, so the ``layer1`` features of that
ResNet-50 classifier are the features these detectors compute too (up to the frozen batch-norm ``eps``: 0 in
the COCO weights, 1e-5 in the classifier — :func:`stem_agreement` measures it). One decoded ``layer1`` tensor
therefore serves the classifier's tail (``layer2`` … ``fc``) and each detector's tail: ``layer2`` … ``layer4``
into the FPN (``layer1`` itself enters the FPN as C2 where the model uses it), then the RPN and RoI heads, or
RetinaNet's head, and torchvision's own post-processing back to the original image's coordinates.

The sender runs the detector's own transform — torchvision's ``GeneralizedRCNNTransform``: normalise with the
ImageNet mean / std, resize so that the shorter side is ``min_size`` (the longer at most ``max_size``), pad to
a multiple of 32 — and then the head; the receiver needs only the resized size and the original size
(:class:`DetectionGeometry`), which a feature stream records. Fed the uncompressed ``layer1`` features,
:meth:`SplitDetector.detect` gives the unsplit model's boxes, scores, labels and masks (a test checks it on
random weights). The ``_v2`` detectors train every layer, so they have no shared stem and are refused.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from icmkit.backbones.split import Head, SplitError, SplitInfo, head_digest
from icmkit.geometry import DetectionGeometry
from icmkit.image import image_to_tensor

STAGE = "layer1"
BACKBONE = "resnet50"  # the classifier whose stem the v1 detectors share
STRIDE = 4  # input pixels per layer1 sample


def detector_transform(min_size: int, max_size: int, mean, std) -> nn.Module:
    """torchvision's detection transform (resize, normalise with ``mean`` / ``std``, pad to 32) — the v1
    detectors' own, with the ImageNet mean / std that the ResNet-50 classifier uses too."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    return GeneralizedRCNNTransform(min_size, max_size, list(mean), list(std))


def prepare_detection_input(image: np.ndarray, transform: nn.Module) -> tuple[torch.Tensor, DetectionGeometry]:
    """An H×W×3 uint8 image → the normalised, resized, padded ``(1, 3, h', w')`` head input and its geometry."""
    with torch.no_grad():
        batch, _ = transform([image_to_tensor(image)])
    resized = tuple(int(v) for v in batch.image_sizes[0])
    return batch.tensors, DetectionGeometry((int(image.shape[0]), int(image.shape[1])), resized)


class _Pyramid(nn.Module):
    """``layer1`` features → the FPN's outputs: ``layer2`` … ``layer4`` of the detector's ResNet, the layers
    its ``IntermediateLayerGetter`` returns (``layer1`` too, as C2, where the model uses it), then the FPN."""

    def __init__(self, body: nn.Module, fpn: nn.Module):
        super().__init__()
        self.return_layers = dict(body.return_layers)
        self.layers = nn.ModuleDict({name: getattr(body, name) for name in ("layer2", "layer3", "layer4")})
        self.fpn = fpn

    def forward(self, f1: torch.Tensor) -> OrderedDict:
        levels: OrderedDict[str, torch.Tensor] = OrderedDict()
        if STAGE in self.return_layers:
            levels[self.return_layers[STAGE]] = f1
        x = f1
        for name, layer in self.layers.items():
            x = layer(x)
            if name in self.return_layers:
                levels[self.return_layers[name]] = x
        return self.fpn(levels)


class SplitDetector:
    """A frozen v1 detector (:class:`icmkit.pretrained.detectors.Detector`) cut after ``layer1``.

    :attr:`head` maps the transform's output to ``layer1`` features; :meth:`detect` runs the rest on them.
    :attr:`info` describes the head as a classifier split does (backbone ``resnet50``, stage ``layer1``), with
    the same digest rule, so a stream made by the ResNet-50 classifier's head is accepted here when the
    weights are equal.

    Args:
        detector: The loaded detector to split. Its model must keep the ImageNet stem frozen (a v1 model);
            any other raises :class:`SplitError`.
    """

    def __init__(self, detector):
        from icmkit.pretrained.detectors import DETECTORS

        if not DETECTORS[detector.name].frozen_stem:
            v1 = ", ".join(name for name, info in DETECTORS.items() if info.frozen_stem)
            raise SplitError(
                f"{detector.name} trains its whole backbone (no frozen ImageNet stem): it cannot decode "
                f"{BACKBONE} {STAGE} features; use a v1 model ({v1})"
            )
        self.detector = detector
        model = detector.model
        body = model.backbone.body
        self.head = Head([body.conv1, body.bn1, body.relu, body.maxpool, body.layer1]).eval()
        self.pyramid = _Pyramid(body, model.backbone.fpn).eval()
        self.transform = transform = model.transform
        self.info = SplitInfo(
            BACKBONE,
            STAGE,
            int(body.layer1[-1].conv3.out_channels),
            STRIDE,
            tuple(transform.image_mean),
            tuple(transform.image_std),
            head_digest(self.head, drop_counters=True),
        )

    @property
    def name(self) -> str:
        return self.detector.name

    @property
    def has_masks(self) -> bool:
        return self.detector.has_masks

    def prepare(self, image: np.ndarray) -> tuple[torch.Tensor, DetectionGeometry]:
        """The sender's input for ``image``: this detector's own resize, normalisation and padding."""
        return prepare_detection_input(image, self.transform)

    @torch.no_grad()
    def features(self, image: np.ndarray) -> tuple[torch.Tensor, DetectionGeometry]:
        """``layer1`` features ``(1, 256, h'/4, w'/4)`` of ``image`` as the unsplit detector computes them."""
        x, geometry = self.prepare(image)
        return self.head(x), geometry

    @torch.no_grad()
    def detect(self, features: torch.Tensor, geometry: DetectionGeometry) -> dict[str, torch.Tensor]:
        """One image's ``layer1`` features (the map of the padded input, ``geometry.feature_size(4)``) →
        torchvision's detections (``boxes``, ``scores``, ``labels``, ``masks``) in original coordinates."""
        from torchvision.models.detection.image_list import ImageList

        if features.ndim != 4 or features.shape[0] != 1 or tuple(features.shape[-2:]) != geometry.feature_size(STRIDE):
            raise SplitError(
                f"{self.name}: expected layer1 features of shape (1, {self.info.channels}, "
                f"{geometry.feature_size(STRIDE)[0]}, {geometry.feature_size(STRIDE)[1]}), got {tuple(features.shape)}"
            )
        levels = self.pyramid(features)
        # The heads read only the padded input's shape (anchor strides) and the resized size (box clipping):
        # a broadcast view stands in for the image tensor the receiver does not have.
        stand_in = features.new_zeros(1, 1, 1, 1).expand(1, 3, *geometry.padded)
        images = ImageList(stand_in, [geometry.resized])
        model = self.detector.model
        if hasattr(model, "rpn"):
            detections = _rcnn_detections(model, images, levels)
        else:
            detections = _retinanet_detections(model, images, levels)
        return model.transform.postprocess(detections, images.image_sizes, [geometry.original])[0]

    def predict(self, features: torch.Tensor, geometry: DetectionGeometry) -> dict[str, Any]:
        """:meth:`detect` as numpy, in the layout of :meth:`icmkit.pretrained.detectors.Detector.predict`."""
        return self.detector.to_numpy(self.detect(features, geometry))


def _rcnn_detections(model: nn.Module, images, levels: OrderedDict) -> list[dict[str, torch.Tensor]]:
    """GeneralizedRCNN.forward's inference steps after the backbone (torchvision 0.29)."""
    proposals, _ = model.rpn(images, levels)
    detections, _ = model.roi_heads(levels, proposals, images.image_sizes)
    return detections


def _retinanet_detections(model: nn.Module, images, levels: OrderedDict) -> list[dict[str, torch.Tensor]]:
    """RetinaNet.forward's inference steps after the backbone (torchvision 0.29): head outputs and anchors
    split per pyramid level, then its own ``postprocess_detections``."""
    features = list(levels.values())
    outputs = model.head(features)
    anchors = model.anchor_generator(images, features)
    per_level = [f.size(2) * f.size(3) for f in features]
    anchors_per_location = outputs["cls_logits"].size(1) // sum(per_level)
    per_level = [n * anchors_per_location for n in per_level]
    split_outputs = {key: list(value.split(per_level, dim=1)) for key, value in outputs.items()}
    split_anchors = [list(a.split(per_level)) for a in anchors]
    return model.postprocess_detections(split_outputs, split_anchors, images.image_sizes)


@dataclass(frozen=True)
class StemAgreement:
    """How far a detector's stem is from the classifier's: weights and ``layer1`` outputs."""

    max_weight_difference: float
    max_output_difference: float
    relative_output_difference: float  # max |Δ| over max |output|


@torch.no_grad()
def stem_agreement(classifier_head: Head, detector_head: Head, size: int = 224, seed: int = 0) -> StemAgreement:
    """Compare two ``layer1`` heads: the largest difference of equal-named weights, and of their outputs on
    one normalised random input (the eps of their batch norms may differ, so outputs may differ a little)."""
    ours, theirs = classifier_head.state_dict(), detector_head.state_dict()
    shared = [k for k in theirs if k in ours and not k.endswith("num_batches_tracked")]
    if not shared:
        raise SplitError("the two heads share no weights")
    weight_gap = max(float((ours[k].float() - theirs[k].float()).abs().max()) for k in shared)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, size, size, generator=generator)
    a, b = classifier_head(x), detector_head(x)
    gap = float((a - b).abs().max())
    return StemAgreement(weight_gap, gap, gap / max(float(a.abs().max()), 1e-12))
