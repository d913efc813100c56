"""The libjpeg quality a JPEG file was written at, estimated from its luminance quantisation table.

A restoration filter behind JPEG is conditioned on the quality (issue 21), and a JPEG file carries no quality,
only the tables libjpeg scaled from its standard ones. The reference tables are libjpeg's own, read back from
tiny files Pillow writes at every quality 1…100 (so they are exactly what this machine's libjpeg writes); a
file's estimate is the quality whose luminance table is nearest in log scale. Files written by libjpeg (Pillow,
OpenCV, ImageMagick, most software) match one quality exactly; cameras and other encoders use tables of their
own, whose nearest libjpeg quality is a fair stand-in for the strength of their quantisation.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np

from icmkit.codecs.anchors._guard import decoding
from icmkit.errors import BitstreamError

QUALITIES = range(1, 101)


@cache
def reference_tables() -> np.ndarray:
    """(100, 64) log luminance tables of libjpeg qualities 1…100, in the order Pillow reports them."""
    from PIL import Image

    blank = Image.new("RGB", (8, 8))
    tables = []
    for quality in QUALITIES:
        buffer = io.BytesIO()
        blank.save(buffer, "JPEG", quality=quality)
        with Image.open(io.BytesIO(buffer.getvalue())) as written:
            tables.append(written.quantization[0])
    return np.log(np.asarray(tables, dtype=np.float64))


def luminance_table(data: bytes, codec: str = "jpeg") -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    with decoding(codec):  # whatever Pillow raises on a hostile header becomes one BitstreamError
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as picture:
                tables = getattr(picture, "quantization", None) or {}
        except UnidentifiedImageError:
            raise BitstreamError(f"{codec}: not a JPEG stream") from None
    table = tables.get(0)
    if table is None or len(table) != 64 or min(table) < 1:
        raise BitstreamError(f"{codec}: JPEG stream without a usable luminance quantisation table")
    return np.asarray(table, dtype=np.float64)


def estimate_quality(data: bytes, codec: str = "jpeg") -> int:
    """The libjpeg quality (1…100) whose luminance table is nearest to the stream's (exact for libjpeg's files)."""
    distance = np.abs(reference_tables() - np.log(luminance_table(data, codec))).sum(axis=1)
    return QUALITIES[int(np.argmin(distance))]
