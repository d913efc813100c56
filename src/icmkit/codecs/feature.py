"""Learned feature codecs: an image goes through a frozen backbone's head, its features are coded.

The stream decodes to :class:`~icmkit.codecs.base.FeatureMaps` (``tensors["features"]``, ``(1, C, h, w)``
float32), which the backbone's tail turns into predictions — no pixels are rebuilt. The ``.icm`` header
is of kind ``feature``; its ``extra`` field (:func:`icmkit.bitstream.pack_extra`; one-letter keys, as every
header byte counts in the rate) holds

====== ===============================================================
``b``  backbone: the classifier the head belongs to, e.g. ``tf_efficientnet_lite0``
``s``  split: the stage the head ends with, e.g. ``blocks.2``
``h``  the 8-byte digest of the head's weights (raw bytes)
``f``  ``C×h×w`` of the coded feature map (padded image / backbone stride), ASCII
``g``  detection streams only: ``h×w`` of the image after the detector's resize, ASCII
====== ===============================================================

so a receiver refuses a stream made by another head before decoding anything. Two geometries:

- classification (the default): the image is padded by edge replication to ``backbone stride × codec
  stride`` (the head's stride times the multiple the codec needs on the feature map); decoded features are
  cropped to ``ceil(H / stride) × ceil(W / stride)``;
- detection (:meth:`FeatureCodec.for_detection`): the sender runs torchvision's detection transform first
  (shorter side to ``min_size``, longer at most ``max_size``, normalise, pad to 32 — what the detector would
  do), then the head; the feature map is padded by edge replication to the codec's multiple and decoded
  features are cropped back to the map of the 32-padded input, which a split detector
  (:class:`icmkit.backbones.detection.SplitDetector`) takes as it is. The header's size is the original
  image's; ``meta["resized"]`` carries the resized size.

bpp is always the stream's bits over the input image's pixels.
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
from icmkit.codecs.base import Availability, CodecKind, FeatureMaps
from icmkit.codecs.learned import IcmContainerCodec
from icmkit.errors import BitstreamError, IcmError, WeightsMismatchError
from icmkit.geometry import DetectionGeometry, format_size, parse_size
from icmkit.image import check_rgb
from icmkit.limits import max_pixels
from icmkit.weights import file_qualities
from icmkit.zoo import family


@dataclass(frozen=True)
class HeadInput:
    """What the head reads: pixels in [0, 1] padded to the codec's stride (classification geometry), or the
    detection transform's normalised, resized, 32-padded batch and its geometry."""

    pixels: torch.Tensor
    geometry: DetectionGeometry | None = None


class FeatureCodec(IcmContainerCodec):
    """A :class:`~icmkit.models.DICMFeatureCodec` family plus the backbone whose head it was trained on."""

    kind = CodecKind.FEATURE
    header_records = True

    def __init__(self, name: str, weights: dict[int, Path], description: str = "", backbone_weights="default"):
        # Quality q of a variable-rate file is its gain unit q − 1; several qualities share one file.
        self._weights = dict(sorted(weights.items()))
        self._files: dict[Path, object] = {}
        self._backbone_weights = backbone_weights
        self._backbones: dict[tuple[str, str], SplitBackbone] = {}
        self._backbone_lock = threading.Lock()
        self._detection_size: tuple[int, int] | None = None
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
    def for_detection(self, min_size: int = 800, max_size: int = 1333) -> FeatureCodec:
        """The same codec (name, weights, loaded models) encoding in the detection geometry: the sender
        resizes as torchvision's detectors do (shorter side ``min_size``, longer at most ``max_size``)."""
        if not (isinstance(min_size, int) and isinstance(max_size, int) and 1 <= min_size <= max_size):
            raise IcmError(f"need whole numbers 1 <= min_size <= max_size, got {min_size!r} and {max_size!r}")
        view = copy.copy(self)  # shares the model caches and their locks
        view._detection_size = (min_size, max_size)
        return view

    @property
    def detection_size(self) -> tuple[int, int] | None:
        """``(min_size, max_size)`` of the detection geometry, None for the classification geometry."""
        return self._detection_size

    # -- hooks of the container codec -------------------------------------------------------------
    def prepare_input(self, image: np.ndarray, model) -> tuple[HeadInput, int, int]:
        if self._detection_size is None:
            x, pad_bottom, pad_right = super().prepare_input(image, model)
            return HeadInput(x), pad_bottom, pad_right
        from icmkit.backbones.detection import detector_transform, prepare_detection_input

        info = self.backbone(model).info
        x, geometry = prepare_detection_input(image, detector_transform(*self._detection_size, info.mean, info.std))
        if geometry.resized[0] * geometry.resized[1] > max_pixels():
            raise IcmError(
                f"the detector's resize of this image ({format_size(geometry.resized)}) exceeds the pixel limit"
            )
        return HeadInput(x, geometry), 0, 0

    def run_compress(self, model, x: HeadInput, quality: int) -> dict:
        backbone = self.backbone(model)
        if x.geometry is None:
            return model.compress(backbone.features(x.pixels), quality - 1)
        features = backbone.head(x.pixels)  # the transform normalised already
        multiple = model.feature_stride
        pad = (0, -features.shape[-1] % multiple, 0, -features.shape[-2] % multiple)
        return model.compress(F.pad(features, pad, mode="replicate"), quality - 1)

    def header_extra(self, model, x: HeadInput) -> bytes:
        info = self.backbone(model).info
        fields = {"b": info.backbone, "s": info.stage, "h": info.head_digest}
        if x.geometry is None:
            height, width = (side // info.stride for side in x.pixels.shape[-2:])
        else:
            height, width = _coded_map(x.geometry, info.stride, model.feature_stride)
            fields["g"] = format_size(x.geometry.resized)
        return bitstream.pack_extra({**fields, "f": f"{info.channels}x{height}x{width}"})

    def check_padding(self, header: bitstream.IcmHeader, model) -> None:
        if "g" in bitstream.split_record(header.extra):  # detection streams: checked with their geometry
            if header.pad_bottom or header.pad_right:
                raise BitstreamError("malformed feature stream header (padding in a detection stream)")
            return
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
        with torch.no_grad():
            features = backbone.features(x.pixels) if x.geometry is None else backbone.head(x.pixels)
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
        extra, geometry = self._check_extra(header, info, model.feature_stride)
        coded_h, coded_w = (int(v) for v in extra["feature_shape"].split("x")[1:])
        with torch.no_grad():
            f_hat = model.decompress(
                [[streams[0]], [streams[1]], [streams[2]]],
                (coded_h // model.hyper_scale, coded_w // model.hyper_scale),
                header.quality - 1,
            )["f_hat"]
        meta = {"codec": self.name, "quality": header.quality, **extra}
        return FeatureMaps.of_split(f_hat, (header.height, header.width), info.stride, meta, geometry)

    @staticmethod
    def _check_extra(header: bitstream.IcmHeader, info, feature_stride: int) -> tuple[dict, DetectionGeometry | None]:
        """Verify the ``extra`` field against the loaded backbone; return it as readable metadata, with the
        detection geometry of a detection stream."""
        extra = bitstream.split_record(header.extra)  # a rate-control record may sit beside the fields
        if sorted(extra) not in (["b", "f", "h", "s"], ["b", "f", "g", "h", "s"]):
            raise BitstreamError(f"malformed feature stream header (fields {', '.join(sorted(extra)) or 'none'})")
        try:
            backbone, stage, shape = (extra[k].decode("ascii") for k in "bsf")
            resized = parse_size(extra["g"].decode("ascii")) if "g" in extra else None
        except UnicodeDecodeError:
            raise BitstreamError("malformed feature stream header (non-ASCII names)") from None
        if (backbone, stage) != (info.backbone, info.stage):
            raise WeightsMismatchError(
                f"stream holds features of {backbone} after {stage}, not of {info.backbone} after {info.stage}"
            )
        if extra["h"] != info.head_digest:
            raise WeightsMismatchError(f"stream was made with another {info.backbone} head (digest {extra['h'].hex()})")
        geometry = None
        if "g" not in extra:
            padded = (header.height + header.pad_bottom, header.width + header.pad_right)
            coded = (padded[0] // info.stride, padded[1] // info.stride)
        elif resized is None or resized[0] * resized[1] > max_pixels():
            raise BitstreamError("malformed feature stream header (bad detection size)")
        else:
            geometry = DetectionGeometry((header.height, header.width), resized)
            coded = _coded_map(geometry, info.stride, feature_stride)
        if shape != f"{info.channels}x{coded[0]}x{coded[1]}":
            raise BitstreamError(
                f"malformed feature stream header (shape {shape}, expected {info.channels}x{coded[0]}x{coded[1]})"
            )
        return {
            "backbone": backbone,
            "split": stage,
            "head_digest": extra["h"].hex(),
            "feature_shape": shape,
            "stride": info.stride,
        }, geometry


def _coded_map(geometry: DetectionGeometry, stride: int, multiple: int) -> tuple[int, int]:
    """``(h, w)`` of the feature map a detection stream codes: the padded input's map, padded to ``multiple``."""
    return tuple(-(-side // multiple) * multiple for side in geometry.feature_size(stride))


def _dicm_lite0_family() -> FeatureCodec:
    return FeatureCodec.from_zoo(
        "icm-dicm-lite0",
        "DICM feature codec between EfficientNet-Lite0's head (blocks.2, 40 ch, stride 8) and tail: RE module, "
        "gnConv transforms, transformer hyper-analysis, two-pass checkerboard context; decodes to features",
    )


FEATURE_CODECS = [_dicm_lite0_family]
