"""JPEG XL through ``imagecodecs`` (libjxl)."""

from __future__ import annotations

import importlib.util

import numpy as np

from icmkit.codecs.anchors._guard import decoding, stream_bytes
from icmkit.codecs.anchors._jxlsize import declared_size
from icmkit.codecs.base import Availability, Codec, QualitySpec
from icmkit.errors import BitstreamError
from icmkit.image import check_rgb
from icmkit.limits import check_declared_size

EFFORT = 7  # libjxl's default (cjxl -e 7, "squirrel")


class JxlCodec(Codec):
    """JPEG XL (VarDCT) through ``imagecodecs.jpegxl_encode`` / ``jpegxl_decode`` (libjxl).

    Knob: ``quality`` 1…100, passed as imagecodecs' ``level``, which libjxl maps to a butteraugli
    distance exactly as ``cjxl -q`` does (90 ↔ distance 1.0, 30 ↔ 6.4; 100 is distance 0 in
    VarDCT, near-lossless rather than the lossless mode). Effort 7 (libjxl's default); bare
    codestream, no container. Default grid 10, 20, 30, 50, 70, 80, 90, 95.
    """

    name = "jxl"
    description = "JPEG XL VarDCT, effort 7 (imagecodecs / libjxl)"
    extension = ".jxl"
    quality = QualitySpec(
        knob="quality",
        grid=(10, 20, 30, 50, 70, 80, 90, 95),
        lo=1,
        hi=100,
        default=80,
        doc="cjxl-style quality (mapped to a butteraugli distance); higher = more bits",
    )

    def availability(self) -> Availability:
        if importlib.util.find_spec("imagecodecs") is None:
            return Availability(False, "imagecodecs is not installed: pip install imagecodecs")
        import imagecodecs

        if not getattr(getattr(imagecodecs, "JPEGXL", None), "available", False):
            return Availability(False, "this imagecodecs build has no JPEG XL (libjxl) support")
        return Availability(True)

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        image = check_rgb(image)
        value = self.quality.validate(quality)
        self.require_available()
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(image, level=value, effort=EFFORT))

    def decode(self, data: bytes) -> np.ndarray:
        data = stream_bytes(data, self.name)
        self.require_available()
        import imagecodecs

        with decoding(self.name):
            width, height = declared_size(data)  # libjxl allocates what the header says: check it first
            check_declared_size(width, height, self.name)
            # Frame 0 only (an animation's other frames would cost time and memory for nothing); one
            # thread, so that decoding never depends on the thread count.
            image = np.asarray(imagecodecs.jpegxl_decode(data, index=0, numthreads=1))
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BitstreamError(f"{self.name}: stream is not an 8-bit RGB image ({image.shape}, {image.dtype})")
        if sorted(image.shape[:2]) != sorted((height, width)):  # orientation may swap the sides
            raise BitstreamError(f"{self.name}: decoded picture does not match the {width}×{height} header")
        return np.ascontiguousarray(image)
