"""The still-image anchors Pillow codes itself: JPEG, WebP, JPEG 2000 and AVIF."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from icmkit.codecs.anchors._guard import decoding, stream_bytes
from icmkit.codecs.base import Availability, Codec, QualitySpec
from icmkit.errors import BitstreamError
from icmkit.image import check_rgb
from icmkit.limits import check_avif_canvas, check_avif_frames, check_declared_size, check_jpeg_scans

_PERCENT_GRID = (5, 10, 20, 30, 50, 75, 90, 95)  # CompressAI's JPEG/WebP anchor grid


class PillowCodec(Codec):
    """One Pillow format, written with fixed ``save_options`` plus the knob, read back as RGB.

    Subclasses name the Pillow format, its save options, the save keyword the knob goes to and
    the :mod:`PIL.features` entry the format needs.
    """

    pil_format: ClassVar[str]
    pil_feature: ClassVar[str]  # the PIL.features entry the format needs
    save_options: ClassVar[Mapping[str, Any]] = {}
    knob_option: ClassVar[str] = "quality"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "feature" in cls.__dict__ and "pil_feature" not in cls.__dict__:  # the name before 0.2
            warnings.warn(
                f"{cls.__name__}.feature is deprecated: name the PIL.features entry pil_feature",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.pil_feature = cls.__dict__["feature"]

    def availability(self) -> Availability:
        from PIL import features

        try:
            supported = features.check(self.pil_feature)
        except ValueError:  # a Pillow too old to know the feature at all (AVIF before 11.2)
            supported = False
        if not supported:
            return Availability(False, f"this Pillow build has no {self.pil_format} support")
        return Availability(True)

    def knob_options(self, value: int) -> dict[str, Any]:
        return {self.knob_option: value}

    def check_complete(self, data: bytes) -> None:
        """Refuse a stream cut short where the library itself would not notice."""

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        from PIL import Image

        image = check_rgb(image)
        value = self.quality.validate(quality)
        self.require_available()
        out = io.BytesIO()
        options = {**self.save_options, **self.knob_options(value)}
        Image.fromarray(image).save(out, format=self.pil_format, **options)
        return out.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        data = stream_bytes(data, self.name)
        self.require_available()
        self.check_complete(data)
        with decoding(self.name):
            try:
                picture = Image.open(io.BytesIO(data), formats=[self.pil_format])
            except UnidentifiedImageError:
                raise BitstreamError(f"{self.name}: not a {self.pil_format} stream") from None
            with picture:
                width, height = picture.size
                check_declared_size(width, height, self.name)
                if self.pil_format == "AVIF":
                    check_avif_canvas(data, (width, height), self.name, BitstreamError)
                picture.load()  # decode now, so that truncation surfaces inside the guard
                rgb = np.asarray(picture.convert("RGB"))
        if rgb.shape != (height, width, 3) or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
            raise BitstreamError(f"{self.name}: decoded picture {rgb.shape} does not match the {width}×{height} header")
        return np.ascontiguousarray(rgb)


class JpegCodec(PillowCodec):
    """JPEG baseline, YCbCr 4:2:0, through Pillow (libjpeg-turbo) with its standard tables.

    Knob: ``quality`` 1…95 (libjpeg's scale; above 95 only wastes bits). Huffman tables are the
    standard ones (no ``optimize``), as in CompressAI's anchors. Default grid 5, 10, 20, 30, 50,
    75, 90, 95.
    """

    name = "jpeg"
    description = "JPEG 4:2:0 (Pillow / libjpeg-turbo)"
    extension = ".jpg"
    quality = QualitySpec(
        knob="quality", grid=_PERCENT_GRID, lo=1, hi=95, default=75, doc="libjpeg quality; higher = more bits"
    )
    pil_format = "JPEG"
    pil_feature = "jpg"
    save_options = {"subsampling": 2}

    def check_complete(self, data: bytes) -> None:
        check_jpeg_scans(data, self.name, BitstreamError)  # before libjpeg passes over the image once per scan
        # libjpeg decodes a file that lost only its EOI marker without complaint. Scan data
        # byte-stuffs 0xFF, so an EOI after the last SOS is a real end (trailing bytes allowed).
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            raise BitstreamError(f"{self.name}: truncated JPEG stream (no end-of-image marker)")


class Jpeg444Codec(JpegCodec):
    """JPEG baseline without chroma subsampling (4:4:4), otherwise as :class:`JpegCodec`.

    Knob: ``quality`` 1…95; default grid 5, 10, 20, 30, 50, 75, 90, 95.
    """

    name = "jpeg444"
    description = "JPEG 4:4:4 (Pillow / libjpeg-turbo)"
    save_options = {"subsampling": 0}


class WebpCodec(PillowCodec):
    """Lossy WebP (VP8 intra, 4:2:0) through Pillow's libwebp at its slowest, best ``method=6``.

    Knob: ``quality`` 0…100; default grid 5, 10, 20, 30, 50, 75, 90, 95.
    """

    name = "webp"
    description = "WebP lossy, method 6 (Pillow / libwebp)"
    extension = ".webp"
    quality = QualitySpec(
        knob="quality", grid=_PERCENT_GRID, lo=0, hi=100, default=75, doc="libwebp quality; higher = more bits"
    )
    pil_format = "WEBP"
    pil_feature = "webp"
    save_options = {"method": 6}


class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (9/7 irreversible wavelet, ICT colour transform) through Pillow's OpenJPEG, in JP2.

    Knob: the compression ``ratio`` (uncompressed 24-bit size / coded size, one quality layer,
    ``quality_mode="rates"``), 1…1000, so a larger ratio means fewer bits: ratio r gives about
    24 / r bpp. ``mct=1`` matters (+2.7 dB at 1 bpp over coding RGB). Default grid 192, 96, 48,
    24, 12, 6 (≈ 0.125 … 4 bpp).
    """

    name = "jpeg2000"
    description = "JPEG 2000, 9/7 wavelet + ICT, rate-controlled (Pillow / OpenJPEG)"
    extension = ".jp2"
    quality = QualitySpec(
        knob="ratio",
        grid=(192, 96, 48, 24, 12, 6),
        lo=1,
        hi=1000,
        default=24,
        rate_increases=False,
        doc="compression ratio over 24-bit RGB (≈ 24 / ratio bpp); larger = fewer bits",
    )
    pil_format = "JPEG2000"
    pil_feature = "jpg_2000"
    save_options = {"quality_mode": "rates", "irreversible": True, "mct": 1}

    def knob_options(self, value: int) -> dict[str, Any]:
        return {"quality_layers": [value]}


class AvifCodec(PillowCodec):
    """AVIF (AV1 intra) 4:4:4 through Pillow's built-in AVIF plugin (libavif + libaom).

    Settings: ``subsampling="4:4:4"``, full range, aom with ``tune=psnr`` (+0.5 dB over the default
    tuning), ``speed=6`` (libavif's default; 0–10, lower is slower and slightly smaller). Knob:
    ``quality`` 0…100 (libavif's; 100 is lossless). Default grid 10, 20, 30, 40, 50, 60, 75, 90.
    """

    name = "avif"
    description = "AVIF 4:4:4, aom tune=psnr, speed 6 (Pillow / libavif)"
    extension = ".avif"
    quality = QualitySpec(
        knob="quality",
        grid=(10, 20, 30, 40, 50, 60, 75, 90),
        lo=0,
        hi=100,
        default=60,
        doc="libavif quality; higher = more bits",
    )
    pil_format = "AVIF"
    pil_feature = "avif"
    save_options = {"subsampling": "4:4:4", "speed": 6, "codec": "aom", "advanced": {"tune": "psnr"}}

    def check_complete(self, data: bytes) -> None:
        check_avif_frames(data, self.name, error=BitstreamError)  # the coded frame, not the ispe box's size

    def availability(self) -> Availability:
        state = super().availability()
        if state.ok:
            from PIL import _avif  # the plugin's own module; only present when AVIF is built in

            probe = getattr(_avif, "encoder_codec_available", None)
            if probe is not None and not probe("aom"):
                return Availability(False, "Pillow's libavif was built without the aom encoder")
        return state
