"""Conventional "anchor" codecs: the standard image and video-intra codecs learned codecs are
compared against. Each module imports its optional library (PyAV, imagecodecs, imageio-ffmpeg)
only when a codec is used, so importing this package is cheap.

========  ==========================================  ===============  ============================
name      route                                       knob             default grid
========  ==========================================  ===============  ============================
jpeg      Pillow / libjpeg-turbo, 4:2:0               quality 1…95     5 10 20 30 50 75 90 95
jpeg444   Pillow / libjpeg-turbo, 4:4:4               quality 1…95     5 10 20 30 50 75 90 95
webp      Pillow / libwebp, method 6                  quality 0…100    5 10 20 30 50 75 90 95
jpeg2000  Pillow / OpenJPEG, 9/7 + ICT, JP2           ratio 1…1000 ↓   192 96 48 24 12 6
hevc444   PyAV libx265, BPG settings, raw stream      q 0…50 ↓         47 42 37 32 27 22 17 12
avif      Pillow / libavif + aom, 4:4:4, tune psnr    quality 0…100    10 20 30 40 50 60 75 90
jxl       imagecodecs / libjxl, effort 7              quality 1…100    10 20 30 50 70 80 90 95
vvc       imageio-ffmpeg libvvenc 4:2:0 10-bit, raw   qp 0…63 ↓        47 42 37 32 27 22
========  ==========================================  ===============  ============================

↓: a larger value means fewer bits (``QualitySpec.rate_increases`` is False).
"""

from __future__ import annotations

from icmkit.codecs.anchors.hevc import Hevc444Codec
from icmkit.codecs.anchors.jxl import JxlCodec
from icmkit.codecs.anchors.pillow_codecs import (
    AvifCodec,
    Jpeg444Codec,
    Jpeg2000Codec,
    JpegCodec,
    PillowCodec,
    WebpCodec,
)
from icmkit.codecs.anchors.vvc import VvcCodec

ANCHOR_CODECS = [
    JpegCodec,
    Jpeg444Codec,
    WebpCodec,
    Jpeg2000Codec,
    Hevc444Codec,
    AvifCodec,
    JxlCodec,
    VvcCodec,
]

__all__ = [
    "ANCHOR_CODECS",
    "AvifCodec",
    "Hevc444Codec",
    "Jpeg2000Codec",
    "Jpeg444Codec",
    "JpegCodec",
    "JxlCodec",
    "PillowCodec",
    "VvcCodec",
    "WebpCodec",
]
