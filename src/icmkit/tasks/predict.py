"""Predictions of pretrained models on anything a user holds: images, compressed streams of any codec, decoded
features — ImageNet top-k (:func:`predict`) and COCO detections (:func:`detect`) — with the per-process model
caches they share with rate control and the benchmark. :mod:`icmkit.api` re-exports them.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from icmkit import bitstream
from icmkit.codecs.base import Codec
from icmkit.codecs.sniff import sniff_codec
from icmkit.codecs.streams import codec_for_stream, read_stream_file
from icmkit.decoded import FeatureMaps
from icmkit.defaults import DEFAULT_CLASSIFIER
from icmkit.errors import BitstreamError, IcmError, InputImageError, WeightsMismatchError
from icmkit.image import ImageLike, load_rgb, read_image


@dataclass(frozen=True)
class TopClass:
    """One of a prediction's best classes: index, ImageNet description and softmax probability."""

    index: int
    label: str
    probability: float


@dataclass
class Prediction:
    """What :func:`predict` returns.

    ``kind``: ``"image"`` (an image file, array or PIL image), ``"pixel_stream"`` (a pixel codec's stream:
    ``.icm`` of ``icm-mse`` …, or a conventional codec's file that is not an ordinary image file, e.g.
    ``.hevc``), ``"feature_stream"`` (a feature codec's ``.icm``) or ``"features"`` (decoded
    :class:`FeatureMaps`, in memory or in a ``.safetensors`` file from ``icm decompress``).
    ``model``: the classifier (for features: the backbone whose tail ran). ``codec``: the codec that
    decoded the input, if any. ``probabilities``: the whole softmax vector.
    """

    kind: str
    model: str
    top_k: list[TopClass]
    codec: str | None = None
    probabilities: np.ndarray = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.model,
            "codec": self.codec,
            "top_k": [{"index": t.index, "label": t.label, "probability": t.probability} for t in self.top_k],
        }


ClassifierWeights = str | os.PathLike | None
_cache_lock = threading.Lock()
_classifiers: dict[tuple, object] = {}
_splits: dict[tuple, object] = {}


def _weights_key(weights: ClassifierWeights) -> str | None:
    if weights is None or (isinstance(weights, str) and weights == "default"):
        return weights
    if isinstance(weights, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", weights) and not Path(weights).exists():
        return weights  # a torchvision weights enum member, e.g. IMAGENET1K_V1
    if not isinstance(weights, (str, os.PathLike)):
        raise IcmError(f"classifier weights must be 'default', None or a file path, got {weights!r}")
    return str(Path(weights).resolve())


def cached_classifier(name: str, weights: ClassifierWeights = "default"):
    """:func:`icmkit.tasks.load_classifier`, loaded once per process for each (name, weights)."""
    key = (name, _weights_key(weights))
    with _cache_lock:
        if key not in _classifiers:
            from icmkit.pretrained.classifiers import load_classifier

            _classifiers[key] = load_classifier(name, key[1])
        return _classifiers[key]


def cached_split_backbone(name: str, split: str, weights: ClassifierWeights = "default"):
    """Classifier ``name`` (cached, see :func:`cached_classifier`) split after stage ``split``: its
    :class:`~icmkit.backbones.SplitBackbone` shares the classifier's modules, so no second copy is loaded."""
    key = (name, split, _weights_key(weights))
    classifier = cached_classifier(name, weights)
    with _cache_lock:
        if key not in _splits:
            from icmkit.backbones import SplitBackbone

            cfg = classifier.preprocess_config
            _splits[key] = SplitBackbone(name, classifier.model, split, cfg.mean, cfg.std, cfg)
        return _splits[key]


def clear_model_cache() -> None:
    """Forget every cached classifier, split backbone and detector (frees their memory)."""
    with _cache_lock:
        _classifiers.clear()
        _splits.clear()
        _detectors.clear()


def predict(
    source: ImageLike | FeatureMaps,
    model: str | None = None,
    k: int = 5,
    weights: ClassifierWeights = "default",
    codec: str | Codec | None = None,
) -> Prediction:
    """ImageNet top-``k`` classes of ``source`` with their softmax probabilities.

    ``source`` is an image (path, encoded bytes, ``H×W×3`` uint8 array, PIL image), a compressed stream
    (path or bytes: ``.icm`` of any codec, or a conventional codec's file), decoded :class:`FeatureMaps`,
    or a ``.safetensors`` file written by ``icm decompress`` from a feature stream.

    Images and pixel streams (decoded first) go through classifier ``model`` (default
    ``tf_efficientnet_lite0``) with its own preprocessing. Features go through the *tail* of the backbone
    they were made by, on the decoded map — in the classifier geometry (feature streams' default) that is the map
    of the classifier's own crop, so the prediction agrees with the image path's; in the full geometry it is the
    whole photo's map. ``model`` may only name that backbone (default: it), and
    its weights must have the head the features came from (checked by digest). ``weights``:
    ``"default"``, None (random initialisation) or a local state dict file. ``codec`` decodes a stream
    with that codec (a name or an unregistered :class:`Codec`) instead of the one its header names.
    Models are loaded once per process.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise IcmError(f"top-k must be a positive integer, got {k!r}")
    label = str(source) if isinstance(source, (str, Path)) else None
    try:
        kind, payload, decoder = _open_source(source, codec, model)
    except IcmError as exc:  # name the file in errors about reading or decoding it
        if label is None or str(exc).startswith(label):
            raise
        raise _with_prefix(exc, label) from None
    if isinstance(payload, FeatureMaps):
        return _predict_features(payload, model, k, weights, kind, decoder)
    classifier = cached_classifier(model or DEFAULT_CLASSIFIER, weights)
    logits = classifier.predict([payload])[0]
    return _prediction(logits, classifier.num_classes, k, kind, classifier.name, decoder)


def _with_prefix(exc: IcmError, label: str) -> IcmError:
    try:
        return type(exc)(f"{label}: {exc}")
    except TypeError:  # a subclass with another constructor: keep it as it is
        return exc


def _refuse_other_model(backbone: str, split: str, model: str | None) -> None:
    if model is not None and model != backbone:
        raise IcmError(
            f"these features come from {backbone}'s head (after {split}); only {backbone}'s "
            f"tail can classify them, not {model} (leave out --model / model=)"
        )


def _check_feature_header(data: bytes, model: str | None) -> None:
    """Refuse another ``model`` from a feature stream's header, before loading anything to decode it."""
    if model is None or _stream_kind(data) != "feature":
        return
    from icmkit.feature_header import parse_feature_header

    try:
        fields = parse_feature_header(bitstream.unpack(data)[0])
    except BitstreamError:
        return  # a malformed header: decoding reports it
    _refuse_other_model(fields.backbone, fields.split, model)


def _stream_kind(data: bytes) -> str | None:
    """``"pixel"`` or ``"feature"`` from an ``.icm`` stream's kind byte (unverified), None for other data."""
    if not bitstream.peek_is_icm(data) or len(data) < 6 or data[5] >= len(bitstream.KINDS):
        return None
    return bitstream.KINDS[data[5]]


def _open_source(source, codec, model: str | None = None) -> tuple[str, np.ndarray | FeatureMaps, Codec | None]:
    """(kind, decoded image or features, the codec that decoded it)."""
    if isinstance(source, FeatureMaps):
        return "features", source, None
    if isinstance(source, (np.ndarray, Image.Image)):
        return "image", read_image(source), None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path = bytes(source), None
    elif isinstance(source, (str, Path)):
        path = Path(source)
        data = read_stream_file(path)
    else:
        raise IcmError(
            f"cannot predict on a {type(source).__name__}: pass a path, bytes, an image array, a PIL "
            "image or FeatureMaps"
        )
    if codec is not None or bitstream.peek_is_icm(data):
        _check_feature_header(data, model)
        chosen = codec_for_stream(data, codec)
        return _decoded(chosen, chosen.decode(data))
    from icmkit.feature_io import load_features, looks_like_safetensors

    if looks_like_safetensors(data):
        return "features", load_features(data, name=str(path) if path else None), None
    try:
        return "image", load_rgb(path if path is not None else data), None
    except InputImageError:
        name = sniff_codec(data)  # a conventional codec's raw stream (.hevc, .vvc, .jxl …) Pillow cannot read
        if name is None:
            raise
    chosen = codec_for_stream(data, name)
    return _decoded(chosen, chosen.decode(data))


def _decoded(codec: Codec, decoded) -> tuple[str, np.ndarray | FeatureMaps, Codec]:
    return ("feature_stream" if isinstance(decoded, FeatureMaps) else "pixel_stream"), decoded, codec


def _check_features_backbone(backbone: str, split: str, digest: str, model: str | None, weights) -> None:
    """Before any model loads for features (a file's metadata, not the user, names the backbone): it must be the
    split backbone of a registered feature codec — unless the user named that model (``--model``) — and, with the
    default weights, the head digest must be one of those codecs' (so a mismatch costs no load, and no download)."""
    from icmkit.codecs.registry import split_backbones

    known = split_backbones()
    named = f"{backbone!r} after {split!r}" if len(backbone) + len(split) <= 120 else "an unknown backbone"
    if (backbone, split) not in known:
        if model is None:
            have = ", ".join(f"{b} after {s}" for b, s in sorted(known)) or "none"
            raise IcmError(
                f"these features name the backbone {named}, which no registered feature codec uses (registered: "
                f"{have}); name it with --model (model=) to load that classifier"
            )
        return  # the user asked for this model by name
    if model is None and isinstance(weights, str) and weights == "default" and digest not in known[(backbone, split)]:
        raise WeightsMismatchError(
            f"features were made by a {backbone} head with digest {digest[:32]}; the registered feature codecs' "
            f"{backbone} heads have digest {', '.join(sorted(known[(backbone, split)]))}"
        )


def _predict_features(
    features: FeatureMaps, model: str | None, k: int, weights: ClassifierWeights, kind: str, decoder: Codec | None
) -> Prediction:
    import torch

    meta = features.meta
    backbone_name, split, digest = meta.get("backbone"), meta.get("split"), meta.get("head_digest")
    if not (backbone_name and split and digest):
        raise IcmError("features carry no backbone, split and head digest in their meta: the tail to run is unknown")
    _refuse_other_model(backbone_name, split, model)
    if len(features.tensors) != 1 and "features" not in features.tensors:
        raise IcmError(f"expected one feature tensor named 'features', found {', '.join(sorted(features.tensors))}")
    name = "features" if "features" in features.tensors else next(iter(features.tensors))
    tensor = torch.as_tensor(features.tensors[name]).to("cpu", torch.float32)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[0] != 1:
        raise IcmError(f"features must be shaped (1, C, h, w) or (C, h, w), not {tuple(tensor.shape)}")

    from icmkit.codecs.feature import FeatureCodec

    if isinstance(decoder, FeatureCodec) and isinstance(weights, str) and weights == "default" and "quality" in meta:
        split_backbone = decoder.backbone(decoder.model(int(meta["quality"]))[0])  # the one that just decoded it
    else:
        if not isinstance(decoder, FeatureCodec):  # features from a file (or in memory): their metadata names it
            _check_features_backbone(backbone_name, split, digest, model, weights)
        split_backbone = cached_split_backbone(backbone_name, split, weights)
    info = split_backbone.info
    which = "default" if isinstance(weights, str) and weights == "default" else "random" if weights is None else weights
    info.check_features(meta, f"the {backbone_name} loaded here ({which} weights)")
    stride = features.strides.get(name)
    if tensor.shape[1] != info.channels or (stride is not None and int(stride) != info.stride):
        raise IcmError(
            f"features of {tensor.shape[1]} channels at stride {stride} do not fit {backbone_name} "
            f"after {split} ({info.channels} channels at stride {info.stride})"
        )
    if meta.get("resized") is not None:  # a detection stream: the map of the padded resized input
        tensor = tensor[:, :, : -(-meta["resized"][0] // info.stride), : -(-meta["resized"][1] // info.stride)]
    with torch.inference_mode():
        logits = split_backbone.tail(tensor)[0].float().numpy()
    num_classes = int(logits.shape[-1])
    return _prediction(logits, num_classes, k, kind, backbone_name, decoder)


def _prediction(
    logits: np.ndarray, num_classes: int, k: int, kind: str, model: str, decoder: Codec | None
) -> Prediction:
    from icmkit.tasks.labels import class_label

    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities, kind="stable")[: min(k, len(probabilities))]
    top = [TopClass(int(i), class_label(int(i), num_classes), float(probabilities[i])) for i in order]
    return Prediction(
        kind=kind,
        model=model,
        top_k=top,
        codec=decoder.name if decoder is not None else None,
        probabilities=probabilities.astype(np.float32),
    )


# -- detection -----------------------------------------------------------------------------------------
@dataclass
class Detections:
    """What :func:`detect` returns: one image's detections in its original pixel coordinates.

    ``boxes`` (N, 4) ``x1, y1, x2, y2``; ``scores`` (N,), best first; ``labels`` (N,) COCO category ids and
    ``names`` their names; ``masks``: COCO RLE dicts for mask models, else None. ``kind`` as for
    :class:`Prediction`; ``model`` the detector; ``codec`` the codec that decoded the input, if any.
    """

    kind: str
    model: str
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: list[str]
    masks: list[dict] | None = None
    codec: str | None = None

    def as_dict(self, min_score: float = 0.0) -> dict:
        keep = [i for i in range(len(self.scores)) if self.scores[i] >= min_score]
        return {
            "kind": self.kind,
            "model": self.model,
            "codec": self.codec,
            "detections": [
                {
                    "label": int(self.labels[i]),
                    "name": self.names[i],
                    "score": float(self.scores[i]),
                    "box": [float(v) for v in self.boxes[i]],
                }
                for i in keep
            ],
        }


_detectors: dict[tuple, object] = {}


def cached_detector(name: str, weights: ClassifierWeights = "default", min_size: int = 800, max_size: int = 1333):
    """:func:`icmkit.pretrained.detectors.load_detector` with its :class:`~icmkit.backbones.detection.SplitDetector`
    (v1 models), loaded once per process for each (name, weights, sizes)."""
    key = (name, _weights_key(weights), min_size, max_size)
    with _cache_lock:
        if key not in _detectors:
            from icmkit.backbones.detection import SplitDetector
            from icmkit.pretrained.detectors import DETECTORS, load_detector

            detector = load_detector(name, key[1], min_size=min_size, max_size=max_size)
            _detectors[key] = (detector, SplitDetector(detector) if DETECTORS[name].frozen_stem else None)
        return _detectors[key]


def detect(
    source: ImageLike | FeatureMaps,
    model: str = "fasterrcnn_resnet50_fpn",
    weights: ClassifierWeights = "default",
    codec: str | Codec | None = None,
    min_size: int = 800,
    max_size: int = 1333,
) -> Detections:
    """COCO detections of ``source`` by torchvision detector ``model``, in the original image's coordinates.

    Images and pixel streams go through the whole detector (its own resize to ``min_size`` / ``max_size``).
    Feature streams (and decoded :class:`FeatureMaps`) coded in the detection geometry
    (:meth:`icmkit.codecs.feature.FeatureCodec.for_detection`, ``icm compress --detector-size``) by a
    ResNet-50 ``layer1`` head go through a v1 detector's tail — no pixels: the stream's resize is the sender's,
    and the detector's head must be the one that made the features (checked by digest).
    """
    from icmkit.pretrained.detectors import DETECTORS, UnknownDetectorError

    if model not in DETECTORS:
        raise UnknownDetectorError(f"unknown detector {model!r}; supported: {', '.join(DETECTORS)}")
    label = str(source) if isinstance(source, (str, Path)) else None
    try:
        kind, payload, decoder = _open_source(source, codec)
    except IcmError as exc:
        if label is None or str(exc).startswith(label):
            raise
        raise _with_prefix(exc, label) from None
    detector, split = cached_detector(model, weights, min_size, max_size)
    if isinstance(payload, FeatureMaps):
        result = _detect_features(payload, model, split)
    else:
        result = detector.predict([payload], batch_size=1)[0]
    categories = detector.categories
    names = [categories[int(i)] if 0 <= int(i) < len(categories) else str(int(i)) for i in result["labels"]]
    return Detections(
        kind=kind,
        model=model,
        boxes=result["boxes"],
        scores=result["scores"],
        labels=result["labels"],
        names=names,
        masks=result.get("masks"),
        codec=decoder.name if decoder is not None else None,
    )


def _detect_features(features: FeatureMaps, model: str, split) -> dict:
    import torch

    from icmkit.geometry import DetectionGeometry

    meta = features.meta
    if split is None:
        raise IcmError(f"{model} trains its whole backbone: it cannot decode features (use a v1 detector)")
    split.info.check_features(meta, model)
    if meta.get("resized") is None:
        geometry = "classifier" if meta.get("input_size") is not None else "full"
        raise IcmError(
            f"these features were coded in the {geometry} geometry; a detector needs a stream coded with "
            "the detector's resize (icm compress --detector-size, FeatureCodec.for_detection)"
        )
    geometry = DetectionGeometry(tuple(features.image_size), tuple(meta["resized"]))
    tensor = torch.as_tensor(features.tensors["features"]).to("cpu", torch.float32)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    return split.predict(tensor, geometry)
