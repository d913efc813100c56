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
====== ===============================================================

so a receiver refuses a stream made by another head before decoding anything. The image is padded
by edge replication to ``backbone stride × codec stride`` (the head's stride times the multiple the
codec needs on the feature map); decoded features are cropped to ``ceil(H / stride) × ceil(W / stride)``.
bpp is always the stream's bits over the input image's pixels.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import torch

from icmkit import bitstream
from icmkit.backbones import SplitBackbone, split_classifier
from icmkit.codecs.base import FEATURES, Availability, CodecKind, FeatureMaps
from icmkit.codecs.learned import IcmContainerCodec
from icmkit.errors import BitstreamError, IcmError, WeightsMismatchError
from icmkit.image import check_rgb
from icmkit.weights import file_qualities
from icmkit.zoo import family


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

    # -- hooks of the container codec -------------------------------------------------------------
    def run_compress(self, model, x: torch.Tensor, quality: int) -> dict:
        return model.compress(self.backbone(model).features(x), quality - 1)

    def header_extra(self, model, x: torch.Tensor) -> bytes:
        info = self.backbone(model).info
        height, width = (side // info.stride for side in x.shape[-2:])
        return bitstream.pack_extra(
            {
                "b": info.backbone,
                "s": info.stage,
                "h": info.head_digest,
                "f": f"{info.channels}x{height}x{width}",
            }
        )

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
            features = backbone.features(x)
        info = backbone.info
        height, width = math.ceil(image.shape[0] / info.stride), math.ceil(image.shape[1] / info.stride)
        meta = {"backbone": info.backbone, "split": info.stage, "head_digest": info.head_digest.hex()}
        return FeatureMaps(
            tensors={FEATURES: features[:, :, :height, :width].contiguous()},
            strides={FEATURES: info.stride},
            image_size=image.shape[:2],
            meta={"codec": self.name, **meta},
        )

    def decode_batch(self, streams: list[bytes]) -> list[FeatureMaps]:
        # Each stream is synthesised on its own (one intra-op thread), so this equals decoding them one by one.
        return [self.decode(data) for data in streams]

    def decode(self, data: bytes) -> FeatureMaps:
        header, streams, model = self._parse(data)
        if len(streams) != 3:
            raise BitstreamError("malformed stream for a feature codec (expected 3 streams)")
        info = self.backbone(model).info
        extra = self._check_extra(header, info)
        padded_h, padded_w = header.height + header.pad_bottom, header.width + header.pad_right
        z_stride = info.stride * model.hyper_scale  # input pixels per hyper-latent sample
        with torch.no_grad():
            f_hat = model.decompress(
                [[streams[0]], [streams[1]], [streams[2]]],
                (padded_h // z_stride, padded_w // z_stride),
                header.quality - 1,
            )["f_hat"]
        height, width = math.ceil(header.height / info.stride), math.ceil(header.width / info.stride)
        return FeatureMaps(
            tensors={FEATURES: f_hat[:, :, :height, :width].contiguous()},
            strides={FEATURES: info.stride},
            image_size=(header.height, header.width),
            meta={"codec": self.name, "quality": header.quality, **extra},
        )

    @staticmethod
    def _check_extra(header: bitstream.IcmHeader, info) -> dict[str, str]:
        """Verify the ``extra`` field against the loaded backbone; return it as readable metadata."""
        extra = bitstream.split_record(header.extra)  # a rate-control record may sit beside the fields
        if sorted(extra) != ["b", "f", "h", "s"]:
            raise BitstreamError(f"malformed feature stream header (fields {', '.join(sorted(extra)) or 'none'})")
        try:
            backbone, stage, shape = (extra[k].decode("ascii") for k in "bsf")
        except UnicodeDecodeError:
            raise BitstreamError("malformed feature stream header (non-ASCII names)") from None
        if (backbone, stage) != (info.backbone, info.stage):
            raise WeightsMismatchError(
                f"stream holds features of {backbone} after {stage}, not of {info.backbone} after {info.stage}"
            )
        if extra["h"] != info.head_digest:
            raise WeightsMismatchError(f"stream was made with another {info.backbone} head (digest {extra['h'].hex()})")
        padded = (header.height + header.pad_bottom, header.width + header.pad_right)
        expected = f"{info.channels}x{padded[0] // info.stride}x{padded[1] // info.stride}"
        if shape != expected:
            raise BitstreamError(f"malformed feature stream header (shape {shape}, expected {expected})")
        return {
            "backbone": backbone,
            "split": stage,
            "head_digest": extra["h"].hex(),
            "feature_shape": shape,
            "stride": info.stride,
        }


def _dicm_lite0_family() -> FeatureCodec:
    return FeatureCodec.from_zoo(
        "icm-dicm-lite0",
        "DICM feature codec between EfficientNet-Lite0's head (blocks.2, 40 ch, stride 8) and tail: RE module, "
        "gnConv transforms, transformer hyper-analysis, two-pass checkerboard context; decodes to features",
    )


FEATURE_CODECS = [_dicm_lite0_family]
