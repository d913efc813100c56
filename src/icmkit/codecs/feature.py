"""Learned feature codecs: an image goes through a frozen backbone's head, its features are coded.

The stream decodes to :class:`~icmkit.codecs.base.FeatureMaps` (``tensors["features"]``, ``(1, C, h, w)``
float32), which the backbone's tail turns into predictions — no pixels are rebuilt. The ``.icm`` header
is of kind ``feature``; its ``extra`` field names the backbone, split, head digest, coded shape and geometry
(:mod:`icmkit.feature_header`), so a receiver refuses a stream made by another head before decoding anything.
Three geometries (:mod:`icmkit.geometry`):

- classifier (the default, :meth:`FeatureCodec.for_classifier`): the sender applies the classifier's own
  evaluation transform (resize, centre crop, normalise — :mod:`icmkit.preprocess`) and runs the head on that
  input, exactly as the classifier would on the image; the receiver's tail then agrees with the image path. The
  header's size is the original image's; the cropped input's size is recorded;
- full (:meth:`FeatureCodec.for_full_image`): the image as it is, padded by edge replication to ``backbone
  stride × codec stride``; decoded features are cropped to ``ceil(H / stride) × ceil(W / stride)``. The tail
  runs on the whole photo's map — what a dense task wants, but classifiers trained on centre crops read it
  poorly. ``icm bench`` gives feature codecs its 256² crop in this geometry;
- detection (:meth:`FeatureCodec.for_detection`): the sender runs torchvision's detection transform first
  (shorter side to ``min_size``, longer at most ``max_size``, normalise, pad to 32 — what the detector would
  do), then the head; decoded features are cropped back to the map of the 32-padded input, which a split
  detector (:class:`icmkit.backbones.detection.SplitDetector`) takes as it is. ``meta["resized"]`` carries the
  resized size.

In the classifier and detection geometries the head runs on the transformed input and its feature map is
padded by edge replication to the codec's multiple. bpp is always the stream's bits over the input image's pixels.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmkit import bitstream
from icmkit.backbones import SplitBackbone, split_classifier
from icmkit.backbones.fold import inference_copy
from icmkit.codecs.base import Availability, CodecKind, FeatureMaps
from icmkit.codecs.learned import IcmContainerCodec
from icmkit.errors import BitstreamError, IcmError, WeightsMismatchError
from icmkit.feature_header import CLASSIFIER, DETECTION, FULL, pack_feature_fields, parse_feature_header
from icmkit.geometry import ClassifierGeometry, DetectionGeometry, format_size
from icmkit.image import check_rgb
from icmkit.limits import max_pixels
from icmkit.weights import file_qualities
from icmkit.zoo import family


@dataclass(frozen=True)
class HeadInput:
    """What the head reads: pixels in [0, 1] padded to the codec's stride (full geometry), or a transform's
    normalised output (the classifier's crop, the detector's resized 32-padded batch) and its geometry."""

    pixels: torch.Tensor
    geometry: ClassifierGeometry | DetectionGeometry | None = None

    @property
    def normalized(self) -> bool:
        return self.geometry is not None


class FeatureCodec(IcmContainerCodec):
    """A :class:`~icmkit.models.DICMFeatureModel` family plus the backbone whose head it was trained on.

    Encodes in the classifier geometry; :meth:`for_full_image` and :meth:`for_detection` give the other views.

    Args:
        name: The codec's name, recorded in every stream's header.
        weights: One weights file per quality; the qualities of a variable-rate file all map to that file
            (quality q is its gain unit q − 1). Empty: the codec is unavailable.
        description: What the codec is, in a sentence or two (listed by ``icm codecs``).
        backbone_weights (str | os.PathLike | None): The weights of the backbone classifier, as
            :func:`~icmkit.pretrained.classifiers.load_classifier` takes them (``"default"``: its shipped ones).
    """

    kind = CodecKind.FEATURE
    header_records = True

    def __init__(self, name: str, weights: dict[int, Path], description: str = "", backbone_weights="default"):
        # Quality q of a variable-rate file is the model's quality q (gain row q − 1); several qualities share one file.
        self._weights = dict(sorted(weights.items()))
        self._files: dict[Path, object] = {}
        self._backbone_weights = backbone_weights
        self._backbones: dict[tuple[str, str], SplitBackbone] = {}
        self._encoder_heads: dict[tuple[str, str], torch.nn.Module] = {}
        self._backbone_lock = threading.Lock()
        self._detection_size: tuple[int, int] | None = None
        self._geometry = CLASSIFIER
        super().__init__(name, tuple(self._weights), description, "index into the shipped rate points, low → high rate")

    @classmethod
    def from_zoo(cls, family_name: str, description: str) -> FeatureCodec:
        entries = family(family_name)
        codec = cls(family_name, {e.quality: e.path for e in entries}, description)
        codec.expect_sha256(entries)
        return codec

    @classmethod
    def from_weights_file(
        cls, path: str | Path, name: str = "icm-feature-custom", backbone_weights="default"
    ) -> FeatureCodec:
        """A codec over one weights file: qualities 1 … the file's number of gain units."""
        qualities = range(1, file_qualities(path) + 1)
        return cls(name, {q: Path(path) for q in qualities}, f"weights from {path}", backbone_weights)

    def availability(self) -> Availability:
        if not self._weights:
            return Availability(False, "no weights shipped for this codec in this installation")
        return Availability(True)

    def _load(self, quality: int):
        path = self._weights[quality]
        if path not in self._files:
            model = self.load_file(path)
            if not hasattr(model, "feature_stride"):
                raise IcmError(f"{path}: holds a {model.architecture} model, not a feature codec")
            self._files[path] = model
        model = self._files[path]
        if quality > model.qualities:
            raise IcmError(f"{path}: has {model.qualities} rate points, not {quality}")
        return model

    # -- the backbone ----------------------------------------------------------------------------
    def backbone(self, model) -> SplitBackbone:
        """The split backbone ``model`` was trained on (loaded once); refused if its head differs."""
        config = model.config
        key = (config["backbone"], config["split"])
        with self._backbone_lock:
            if key not in self._backbones:
                self._backbones[key] = split_classifier(*key, weights=self._backbone_weights)
            backbone = self._backbones[key]
        if backbone.info.head_digest.hex() != config["head_digest"]:
            raise WeightsMismatchError(
                f"the {key[0]} head loaded here (digest {backbone.info.head_digest.hex()}) is not the one codec "
                f"{self.name!r} was trained on (digest {config['head_digest']})"
            )
        return backbone

    def stride(self, model) -> int:
        return self.backbone(model).info.stride * model.feature_stride

    # -- geometry ---------------------------------------------------------------------------------
    def _view(self, geometry: str, detection_size: tuple[int, int] | None = None) -> FeatureCodec:
        view = copy.copy(self)  # shares the model caches and their locks
        view._geometry, view._detection_size = geometry, detection_size
        return view

    def for_classifier(self) -> FeatureCodec:
        """The same codec (name, weights, loaded models) encoding in the classifier geometry (the default): the
        sender applies the backbone classifier's own evaluation transform (resize, centre crop) first."""
        return self._view(CLASSIFIER)

    def for_full_image(self) -> FeatureCodec:
        """The same codec encoding the whole image as it is (padded to the codec's multiple): the tail runs on
        the whole map. What ``icm bench`` uses on its crops; classifiers read whole photos' maps poorly."""
        return self._view(FULL)

    def for_detection(self, min_size: int = 800, max_size: int = 1333) -> FeatureCodec:
        """The same codec encoding in the detection geometry: the sender resizes as torchvision's detectors do
        (shorter side ``min_size``, longer at most ``max_size``)."""
        if not (isinstance(min_size, int) and isinstance(max_size, int) and 1 <= min_size <= max_size):
            raise IcmError(f"need whole numbers 1 <= min_size <= max_size, got {min_size!r} and {max_size!r}")
        return self._view(DETECTION, (min_size, max_size))

    @property
    def geometry(self) -> str:
        """How this view codes images: ``"classifier"``, ``"full"`` or ``"detection"``."""
        return self._geometry

    @property
    def detection_size(self) -> tuple[int, int] | None:
        """``(min_size, max_size)`` of the detection geometry, None otherwise."""
        return self._detection_size

    # -- hooks of the container codec -------------------------------------------------------------
    def prepare_input(self, image: np.ndarray, model) -> tuple[HeadInput, int, int]:
        if self._geometry == FULL:
            x, pad_bottom, pad_right = super().prepare_input(image, model)
            return HeadInput(x), pad_bottom, pad_right
        backbone = self.backbone(model)
        if self._geometry == CLASSIFIER:
            return HeadInput(*backbone.classifier_input(image)), 0, 0
        from icmkit.backbones.detection import detector_transform, prepare_detection_input

        info = backbone.info
        x, geometry = prepare_detection_input(image, detector_transform(*self._detection_size, info.mean, info.std))
        if geometry.resized[0] * geometry.resized[1] > max_pixels():
            raise IcmError(
                f"the detector's resize of this image ({format_size(geometry.resized)}) exceeds the pixel limit"
            )
        return HeadInput(x, geometry), 0, 0

    def run_compress(self, model, x: HeadInput, quality: int) -> dict:
        features = self._head(model, x)
        if x.normalized:  # the transformed input's map, padded to the codec's multiple
            multiple = model.feature_stride
            pad = (0, -features.shape[-1] % multiple, 0, -features.shape[-2] % multiple)
            features = F.pad(features, pad, mode="replicate")
        return model.compress(features, quality)

    def _head(self, model, x: HeadInput) -> torch.Tensor:
        """The head's features of ``x`` through the encoder's copy of the head (folded, channels last: see
        :meth:`encoder_head`)."""
        backbone = self.backbone(model)
        pixels = x.pixels if x.normalized else backbone.normalize(x.pixels)  # transforms normalise already
        head = self.encoder_head(backbone)
        return head(pixels.contiguous(memory_format=torch.channels_last)).contiguous()

    def encoder_head(self, backbone: SplitBackbone) -> torch.nn.Module:
        """``backbone``'s head as the encoder runs it (built once): batch norms folded into their convolutions,
        channels last — about twice as fast on a CPU, equal within float32 rounding. Streams still name the head
        by the digest of its weights as trained (the unfolded head's); a decoder never runs it."""
        key = (backbone.info.backbone, backbone.info.stage)  # as self._backbones: one loaded head per key
        with self._backbone_lock:
            if key not in self._encoder_heads:
                self._encoder_heads[key] = inference_copy(backbone.head, torch.zeros(1, 3, 64, 64))
            return self._encoder_heads[key]

    def header_extra(self, model, x: HeadInput) -> bytes:
        info = self.backbone(model).info
        if x.geometry is None:
            coded = tuple(side // info.stride for side in x.pixels.shape[-2:])
        else:
            coded = _coded_map(x.geometry, info.stride, model.feature_stride)
        shape = (info.channels, *coded)
        return pack_feature_fields(info.backbone, info.stage, info.head_digest, shape, x.geometry)

    def check_padding(self, header: bitstream.IcmHeader, model) -> None:
        if parse_feature_header(header).geometry is None:  # resized streams: no padding, checked by the parser
            super().check_padding(header, model)

    # -- the codec protocol ------------------------------------------------------------------------
    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        coded, header = self._code(image, quality)
        anchors, others, z = coded["strings"]
        return bitstream.pack(header, [anchors[0], others[0], z[0]])

    def uncompressed(self, image: np.ndarray) -> FeatureMaps:
        """The head's features of ``image`` without coding, cropped and described as :meth:`decode` returns
        them: the reference a decoded stream is compared with (e.g. by rate control's keep-prediction)."""
        self.require_available()
        image = check_rgb(image)
        model = self.model(self.quality.default)[0]
        backbone = self.backbone(model)
        x, _, _ = self.prepare_input(image, model)
        with torch.no_grad():  # the head as trained, not the encoder's copy: this is the reference
            features = backbone.head(x.pixels) if x.normalized else backbone.features(x.pixels)
        info = backbone.info
        meta = {
            "codec": self.name,
            "backbone": info.backbone,
            "split": info.stage,
            "head_digest": info.head_digest.hex(),
        }
        return FeatureMaps.of_split(features, image.shape[:2], info.stride, meta, x.geometry)

    def decode_batch(self, streams: list[bytes]) -> list[FeatureMaps]:
        # Each stream is synthesised on its own (one intra-op thread), so this equals decoding them one by one.
        return [self.decode(data) for data in streams]

    def decode(self, data: bytes) -> FeatureMaps:
        header, streams, model = self._parse(data)
        if len(streams) != 3:
            raise BitstreamError("malformed stream for a feature codec (expected 3 streams)")
        info = self.backbone(model).info
        fields = self._check_fields(header, info, model.feature_stride)
        coded_h, coded_w = fields.coded
        with torch.no_grad():
            f_hat = model.decompress(
                [[streams[0]], [streams[1]], [streams[2]]],
                (coded_h // model.hyper_scale, coded_w // model.hyper_scale),
                header.quality,
            )["f_hat"]
        meta = {
            "codec": self.name,
            "quality": header.quality,
            "backbone": fields.backbone,
            "split": fields.split,
            "head_digest": fields.head_digest.hex(),
            "feature_shape": fields.feature_shape,
            "stride": info.stride,
        }
        return FeatureMaps.of_split(f_hat, (header.height, header.width), info.stride, meta, fields.geometry)

    @staticmethod
    def _check_fields(header: bitstream.IcmHeader, info, feature_stride: int):
        """The header's feature fields, checked against the loaded backbone and the coded map's shape."""
        fields = parse_feature_header(header)
        if (fields.backbone, fields.split) != (info.backbone, info.stage):
            raise WeightsMismatchError(
                f"stream holds features of {fields.backbone} after {fields.split}, not of {info.backbone} after "
                f"{info.stage}"
            )
        if fields.head_digest != info.head_digest:
            raise WeightsMismatchError(
                f"stream was made with another {info.backbone} head (digest {fields.head_digest.hex()})"
            )
        if fields.geometry is None:
            padded = (header.height + header.pad_bottom, header.width + header.pad_right)
            coded = (padded[0] // info.stride, padded[1] // info.stride)
        else:
            coded = _coded_map(fields.geometry, info.stride, feature_stride)
        if fields.feature_shape != f"{info.channels}x{coded[0]}x{coded[1]}":
            raise BitstreamError(
                f"malformed feature stream header (shape {fields.feature_shape}, expected "
                f"{info.channels}x{coded[0]}x{coded[1]})"
            )
        return fields


def _coded_map(geometry: ClassifierGeometry | DetectionGeometry, stride: int, multiple: int) -> tuple[int, int]:
    """``(h, w)`` of the feature map a resized stream codes: the transformed input's map, padded to ``multiple``."""
    return tuple(-(-side // multiple) * multiple for side in geometry.feature_size(stride))


def _dicm_lite0_family() -> FeatureCodec:
    return FeatureCodec.from_zoo(
        "icm-dicm-lite0",
        "DICM feature codec between EfficientNet-Lite0's head (blocks.2, 40 ch, stride 8) and tail: RE module, "
        "gnConv transforms, transformer hyper-analysis, two-pass checkerboard context; decodes to features",
    )


FEATURE_CODECS = [_dicm_lite0_family]
