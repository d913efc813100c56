"""The pixel limit: images and stream headers declaring more pixels are refused before any pixel is allocated.

Light on purpose (no numpy, no Pillow): the ``.icm`` reader and the command line use it before anything heavy
is imported.
"""

from __future__ import annotations

import os

from icmkit.errors import BitstreamError, InputImageError

DEFAULT_MAX_PIXELS = 1 << 26  # 67 MP: above 8K UHD (33 MP); learned decoders need ~150 bytes per pixel
ENVIRONMENT = "ICM_MAX_PIXELS"


def max_pixels() -> int:
    """The configured pixel limit: ``ICM_MAX_PIXELS`` in the environment, else the default."""
    value = os.environ.get(ENVIRONMENT)
    if value is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise InputImageError(f"{ENVIRONMENT} must be an integer, got {value!r}") from None
    if limit <= 0:
        raise InputImageError(f"{ENVIRONMENT} must be positive")
    return limit


def check_pixel_count(width: int, height: int, limit: int | None = None) -> None:
    """Refuse an input image larger than the limit (read from its header, before decoding)."""
    _check(width, height, limit, InputImageError, f"image of {width}×{height}", " exceeds the limit of")


def check_declared_size(width: int, height: int, what: str, limit: int | None = None) -> None:
    """Refuse a stream whose header declares more pixels than the limit, before decoding it."""
    _check(width, height, limit, BitstreamError, f"{what}: stream declares {width}×{height}", ", over the limit of")


def _check(width: int, height: int, limit: int | None, error: type[Exception], subject: str, verb: str) -> None:
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise error(f"{subject} = {width * height:,} pixels{verb} {limit:,} (set {ENVIRONMENT} to raise it)")
