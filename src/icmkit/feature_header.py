"""The fields a feature stream's ``.icm`` header carries, parsed and checked in one place.

A feature codec's header (:mod:`icmkit.codecs.feature`) stores its fields in the ``extra`` item list
(:func:`icmkit.bitstream.pack_extra`; one-letter keys, as every header byte counts in the rate):

====== ==========================================================================================
``b``  backbone: the classifier the head belongs to, e.g. ``tf_efficientnet_lite0``
``s``  split: the stage the head ends with, e.g. ``blocks.2``
``h``  the 8-byte digest of the head's weights (raw bytes)
``f``  ``C×h×w`` of the coded feature map, ASCII
``c``  classifier-geometry streams only: ``h×w`` of the classifier's cropped input, ASCII
``g``  detection streams only: ``h×w`` of the image after the detector's resize, ASCII
====== ==========================================================================================

A stream with neither ``c`` nor ``g`` is in the full geometry (the image as it is, padded to the codec's
multiple). :func:`parse_feature_header` checks the fields' form against the header (everything that needs no
backbone: the names, the digest's length, the sizes against the pixel limit, the padding each geometry allows);
the codec then checks them against the backbone it loads. No torch here: ``icm info`` uses it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from icmkit import bitstream
from icmkit.digest import DIGEST_BYTES
from icmkit.errors import BitstreamError
from icmkit.geometry import ClassifierGeometry, DetectionGeometry, format_size, parse_size
from icmkit.limits import max_pixels

FULL, CLASSIFIER, DETECTION = "full", "classifier", "detection"
GEOMETRIES = (CLASSIFIER, FULL, DETECTION)
_SHAPE = re.compile(r"^([1-9][0-9]{0,5})x([1-9][0-9]{0,5})x([1-9][0-9]{0,5})$")
_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]{1,128}$")


@dataclass(frozen=True)
class FeatureStreamHeader:
    """A feature stream's own header fields, checked in form (not yet against a backbone)."""

    backbone: str
    split: str
    head_digest: bytes
    channels: int
    coded: tuple[int, int]  # (h, w) of the coded feature map
    geometry: ClassifierGeometry | DetectionGeometry | None  # None: the full geometry

    @property
    def geometry_name(self) -> str:
        if isinstance(self.geometry, ClassifierGeometry):
            return CLASSIFIER
        return DETECTION if isinstance(self.geometry, DetectionGeometry) else FULL

    @property
    def feature_shape(self) -> str:
        return f"{self.channels}x{self.coded[0]}x{self.coded[1]}"

    def fields(self) -> dict[str, str]:
        """What a reader shows (``icm info``) and what decoded features carry in their meta."""
        out = {
            "backbone": self.backbone,
            "split": self.split,
            "feature_shape": self.feature_shape,
            "geometry": self.geometry_name,
            "head_digest": self.head_digest.hex(),
        }
        if isinstance(self.geometry, ClassifierGeometry):
            out["input_size"] = format_size(self.geometry.input)
        elif isinstance(self.geometry, DetectionGeometry):
            out["resized"] = format_size(self.geometry.resized)
        return out


def pack_feature_fields(
    backbone: str,
    split: str,
    head_digest: bytes,
    shape: tuple[int, int, int],
    geometry: ClassifierGeometry | DetectionGeometry | None,
) -> bytes:
    """The ``extra`` bytes of a feature stream (the inverse of :func:`parse_feature_header`)."""
    fields = {"b": backbone, "s": split, "h": head_digest, "f": "x".join(str(int(v)) for v in shape)}
    if isinstance(geometry, ClassifierGeometry):
        fields["c"] = format_size(geometry.input)
    elif isinstance(geometry, DetectionGeometry):
        fields["g"] = format_size(geometry.resized)
    return bitstream.pack_extra(fields)


def parse_feature_header(header: bitstream.IcmHeader) -> FeatureStreamHeader:
    """The feature fields of ``header`` (a rate-control record may sit beside them); a malformed field is a
    :class:`~icmkit.errors.BitstreamError`."""
    extra = bitstream.split_record(header.extra)
    keys = sorted(extra)
    if keys not in (["b", "f", "h", "s"], ["b", "c", "f", "h", "s"], ["b", "f", "g", "h", "s"]):
        raise BitstreamError(f"malformed feature stream header (fields {', '.join(keys) or 'none'})")
    try:
        backbone, split, shape = (extra[key].decode("ascii") for key in "bsf")
        size_text = (extra.get("c") or extra.get("g") or b"").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("malformed feature stream header (non-ASCII names)") from None
    if not (_NAME.match(backbone) and _NAME.match(split)):
        raise BitstreamError("malformed feature stream header (backbone or split name)")
    match = _SHAPE.match(shape)
    if match is None or len(extra["h"]) != DIGEST_BYTES:
        raise BitstreamError("malformed feature stream header (feature shape or head digest)")
    channels, rows, cols = (int(v) for v in match.groups())
    geometry = None
    if size_text:
        size = parse_size(size_text)
        if size is None or size[0] * size[1] > max_pixels():
            what = "input" if "c" in extra else "detection"
            raise BitstreamError(f"malformed feature stream header (bad {what} size)")
        if header.pad_bottom or header.pad_right:
            raise BitstreamError("malformed feature stream header (padding in a resized stream)")
        original = (header.height, header.width)
        geometry = ClassifierGeometry(original, size) if "c" in extra else DetectionGeometry(original, size)
    return FeatureStreamHeader(backbone, split, extra["h"], channels, (rows, cols), geometry)
