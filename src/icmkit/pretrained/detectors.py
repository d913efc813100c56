"""COCO object detectors and instance segmenters (torchvision R50-FPN models): loading, weights and inference.

:func:`load_detector` returns a :class:`Detector`: one of torchvision's COCO-trained R50-FPN models, frozen
and in eval mode, with :meth:`Detector.predict` turning H×W×3 uint8 RGB arrays into per-image numpy
results. Scoring them is :mod:`icmkit.tasks.detection`'s job.

Supported names (:data:`DETECTORS`):

===============================  =====  ============  ==============================
name                             masks  frozen stem   ``weights="default"``
===============================  =====  ============  ==============================
``fasterrcnn_resnet50_fpn``      no     yes           ``FasterRCNN_ResNet50_FPN_Weights.COCO_V1``
``maskrcnn_resnet50_fpn``        yes    yes           ``MaskRCNN_ResNet50_FPN_Weights.COCO_V1``
``fasterrcnn_resnet50_fpn_v2``   no     no            ``FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1``
``maskrcnn_resnet50_fpn_v2``     yes    no            ``MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1``
``retinanet_resnet50_fpn``       no     yes           ``RetinaNet_ResNet50_FPN_Weights.COCO_V1``
===============================  =====  ============  ==============================

Weights: ``"default"`` is the torchvision enum's ``DEFAULT`` (downloaded by torchvision into
``torch.hub.get_dir()/checkpoints`` on first use; offline, a missing file is a one-line
:class:`DetectorWeightsError` naming the URL and how to pass a local copy); ``None`` is random
initialisation built with ``weights_backbone=None`` (nothing is downloaded); a ``.pth`` / ``.pt`` /
``.safetensors`` path is a state dict loaded strictly. The heads always have torchvision's 91 outputs,
whose indices are the COCO category ids (1…90, with gaps), so ``labels`` are COCO ``category_id`` values.

The "frozen stem" models (the v1 ones) are built exactly as torchvision builds them for its COCO weights —
the ResNet-50 uses ``FrozenBatchNorm2d`` — whatever the weights, so that a state dict saved from any of
them loads into any other. torchvision sets the frozen batch-norm ``eps`` to 0 after loading those COCO_V1
weights; icmkit does the same for ``"default"`` and for a local file that is byte-identical to the
torchvision download (its SHA-256 starts with the hash in the file name), so a copied file gives the
same results as ``"default"``. Other files keep ``eps`` = 1e-5.

Preprocessing is torchvision's own (``GeneralizedRCNNTransform``): each image is normalised with the
ImageNet mean/std, resized so that its shorter side is ``min_size`` (longer side at most ``max_size``;
torchvision's 800 / 1333 unless given) and padded to a multiple of 32 together with the other images of
its batch; boxes and masks are mapped back to the image's own size. Because the padding depends on the
batch, an image's results can differ very slightly with ``batch_size``; use ``batch_size=1`` where
results must not depend on the other images.

Design note — feature codecs: torchvision trains its v1 R50-FPN detectors (Faster / Mask R-CNN,
RetinaNet) with ``conv1`` and ``layer1`` frozen at their ImageNet ``IMAGENET1K_V1`` values
(``trainable_backbone_layers=3``), so the stem + ``layer1`` of these models computes the same 256-channel
H/4 features as the ImageNet ResNet-50 classifier (up to the frozen batch-norm eps). A later feature codec
will decode such ``layer1`` features and feed them to the rest of the detector (``layer2``–``layer4``, FPN,
heads). :attr:`Detector.model` is therefore the bare torchvision module (not wrapped, traced or fused):
``model.transform`` does the resize / normalisation, ``model.backbone.body`` holds
``conv1 … layer4`` and ``model.backbone.fpn`` the pyramid, so such a split can be built on top of it.
The ``_v2`` models train every layer and do not share the classifier's stem.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icmkit.errors import IcmError, one_line
from icmkit.image import image_to_tensor
from icmkit.pretrained._common import check_image, freeze, mismatch_summary, read_state_dict

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
NUM_CLASSES = 91  # torchvision's COCO heads: index = COCO category id (0 = background)


class UnknownDetectorError(IcmError):
    """A detector name that icmkit does not support."""


class DetectorWeightsError(IcmError):
    """Detector weights that are unavailable, unreadable or do not fit the architecture."""


@dataclass(frozen=True)
class DetectorInfo:
    """One supported detector: whether it predicts instance masks, and whether it is a v1 model whose
    ResNet-50 stem (conv1 + layer1) stays frozen at ImageNet weights (FrozenBatchNorm2d backbone)."""

    has_masks: bool
    frozen_stem: bool


DETECTORS: dict[str, DetectorInfo] = {
    "fasterrcnn_resnet50_fpn": DetectorInfo(has_masks=False, frozen_stem=True),
    "maskrcnn_resnet50_fpn": DetectorInfo(has_masks=True, frozen_stem=True),
    "fasterrcnn_resnet50_fpn_v2": DetectorInfo(has_masks=False, frozen_stem=False),
    "maskrcnn_resnet50_fpn_v2": DetectorInfo(has_masks=True, frozen_stem=False),
    "retinanet_resnet50_fpn": DetectorInfo(has_masks=False, frozen_stem=True),
}


class Detector:
    """A frozen torchvision COCO detector.

    Built by :func:`load_detector`. ``has_masks`` says whether :meth:`predict` returns ``masks``.

    Args:
        name: The torchvision builder's name, one of :data:`DETECTORS`.
        model: The bare torchvision module, frozen here (eval mode, ``requires_grad`` off).
        weights: Where the weights came from: ``"random"``, the torchvision enum, or the file path.
    """

    def __init__(self, name: str, model: torch.nn.Module, weights: str = ""):
        self.name = name
        self.has_masks = DETECTORS[name].has_masks
        self.model = freeze(model)
        self.weights = weights

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, has_masks={self.has_masks}, weights={self.weights!r})"

    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Detector:
        self.model.to(device)
        return self

    @property
    def categories(self) -> list[str]:
        """The 91 class names by COCO category id (``"__background__"`` at 0, ``"N/A"`` in the gaps)."""
        import torchvision.models

        return list(torchvision.models.get_model_weights(self.name).DEFAULT.meta["categories"])

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 2) -> list[dict[str, Any]]:
        """Detections per image, in the image's own pixel coordinates.

        Each dict holds ``boxes`` (N, 4) float32 ``x1, y1, x2, y2``; ``scores`` (N,) float32, best first;
        ``labels`` (N,) int64 COCO category ids; and for mask models ``masks``: N COCO RLE dicts
        (``{"size": [h, w], "counts": str}``, the soft masks thresholded at 0.5).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        images = [check_image(image, i) for i, image in enumerate(images)]
        results: list[dict[str, Any]] = []
        device = self.device
        for start in range(0, len(images), batch_size):
            batch = [image_to_tensor(image).to(device) for image in images[start : start + batch_size]]
            with torch.inference_mode():
                outputs = self.model(batch)
            results += [self.to_numpy(output) for output in outputs]
        return results

    def to_numpy(self, output: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """One torchvision output → the numpy layout of :meth:`predict` (masks as COCO RLE)."""
        result: dict[str, Any] = {
            "boxes": output["boxes"].detach().float().cpu().numpy().reshape(-1, 4),
            "scores": output["scores"].detach().float().cpu().numpy().reshape(-1),
            "labels": output["labels"].detach().cpu().numpy().astype(np.int64).reshape(-1),
        }
        if self.has_masks:
            masks = output["masks"]  # (N, 1, H, W) probabilities, pasted at the image's size
            result["masks"] = encode_masks((masks[:, 0] > 0.5).cpu().numpy())
        return result


def load_detector(
    name: str,
    weights: str | os.PathLike | None = "default",
    *,
    min_size: int = 800,
    max_size: int = 1333,
    **model_kwargs: Any,
) -> Detector:
    """Build detector ``name`` with ``weights`` = ``"default"``, ``None`` (random) or a local state dict.

    ``min_size`` / ``max_size``: the resize of torchvision's transform (shorter side / longest side
    bound; torchvision's defaults 800 / 1333 — small values make tests fast). ``model_kwargs`` go to the
    torchvision builder as they are (e.g. ``box_score_thresh=0.0``, ``box_detections_per_img=300``;
    RetinaNet: ``score_thresh``, ``detections_per_img``).
    """
    if not isinstance(name, str) or name not in DETECTORS:
        raise UnknownDetectorError(f"unknown detector {name!r}; supported: {', '.join(DETECTORS)}")
    for key in ("num_classes", "weights_backbone", "weights"):
        if key in model_kwargs:
            raise DetectorWeightsError(f"{name}: {key} cannot be changed (COCO heads with {NUM_CLASSES} classes)")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise DetectorWeightsError(f"weights must be 'default', None or a file path, got {weights!r}")
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size} and {max_size}")
    kwargs = {"min_size": min_size, "max_size": max_size, **model_kwargs}
    if isinstance(weights, str) and weights == "default":
        return Detector(name, _load_default(name, kwargs), weights=str(_default_enum(name)))
    if weights is None:
        # Random weights are the same in every process (seed 0, the caller's random stream untouched); seeded
        # like the classifiers, the v1 models' ResNet-50 then equals the random resnet50 classifier's — their
        # stems are shared as with the real weights, so feature streams can be tested end to end.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return Detector(name, _build_random(name, kwargs), weights="random")
    model = _build_random(name, kwargs)
    path = Path(weights)
    _load_state_dict(model, _read_state_dict(path), name, path)
    if DETECTORS[name].frozen_stem and _is_torchvision_file(path, name):
        _set_frozen_bn_eps(model, 0.0)  # what torchvision does after loading its COCO_V1 weights
    return Detector(name, model, weights=str(path))


def _default_enum(name: str):
    import torchvision.models

    return torchvision.models.get_model_weights(name).DEFAULT


def _load_default(name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    import torchvision.models

    from icmkit.pretrained import offline as _offline

    default = _default_enum(name)
    if _offline.offline() and not _offline.torchvision_weights_cached(default):
        raise DetectorWeightsError(_offline.refusal(name, f"torchvision {default}"))
    try:
        return torchvision.models.get_model(name, weights=default, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        filename = default.url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise DetectorWeightsError(
            f"{name}: torchvision's COCO weights {default} are not available offline ({one_line(exc)}); "
            f"download {default.url} where there is internet and pass the file "
            f"(weights='/path/to/{filename}') or copy it into {cache}"
        ) from None


def _build_random(name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """torchvision's builder with ``weights=None, weights_backbone=None`` (no download); v1 backbones then
    get the ``FrozenBatchNorm2d`` layers torchvision uses whenever it builds them for trained weights."""
    import torchvision.models

    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **kwargs)
    if DETECTORS[name].frozen_stem:
        _freeze_batch_norm(model.backbone.body)
    return model


def _freeze_batch_norm(module: torch.nn.Module) -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    for child_name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, child_name, frozen)
        else:
            _freeze_batch_norm(child)


def _set_frozen_bn_eps(model: torch.nn.Module, eps: float) -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


def _is_torchvision_file(path: Path, name: str) -> bool:
    """Whether ``path`` is byte-identical to torchvision's download of ``name``'s DEFAULT weights."""
    match = re.search(r"-([a-f0-9]+)\.", _default_enum(name).url.rsplit("/", 1)[-1])
    if match is None or path.suffix.lower() not in (".pth", ".pt"):
        return False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(match.group(1))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path, DetectorWeightsError, WEIGHT_SUFFIXES)


def _load_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str, path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        summary = mismatch_summary(model, state, ignore_suffix="num_batches_tracked")
        raise DetectorWeightsError(f"{path}: weights do not fit {name} ({summary or one_line(exc)})") from None


# --- COCO results and evaluation ----------------------------------------------------------------------


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """Binary masks (N, H, W) → N COCO RLE dicts with JSON-serialisable ``counts`` (str)."""
    from pycocotools import mask as mask_utils

    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [_rle_to_json(rle) for rle in encoded]


def _rle_to_json(rle: Mapping[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
    return {"size": [int(v) for v in rle["size"]], "counts": counts}
