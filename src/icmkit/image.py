"""Reading user images into the codecs' input form (H×W×3 uint8 RGB) and writing decoded images.

Inputs are turned upright by their EXIF orientation; grayscale and palette images become RGB; alpha is
dropped with a warning; 16-bit images are rounded to 8 bits with a warning. The pixel count is checked
from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from icmkit.errors import BitstreamError, InputImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif"}
DEFAULT_MAX_PIXELS = 1 << 26  # 67 MP: above 8K UHD (33 MP); learned decoders need ~150 bytes per pixel


class IcmWarning(UserWarning):
    """A lossy but accepted conversion of the user's input (alpha dropped, bit depth reduced)."""


def max_pixels() -> int:
    """The configured pixel limit: ``ICM_MAX_PIXELS`` in the environment, else the default."""
    value = os.environ.get("ICM_MAX_PIXELS")
    if value is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise InputImageError(f"ICM_MAX_PIXELS must be an integer, got {value!r}") from None
    if limit <= 0:
        raise InputImageError("ICM_MAX_PIXELS must be positive")
    return limit


def check_pixel_count(width: int, height: int, limit: int | None = None) -> None:
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise InputImageError(
            f"image of {width}×{height} = {width * height:,} pixels exceeds the limit of {limit:,} "
            "(set ICM_MAX_PIXELS to raise it)"
        )


def check_declared_size(width: int, height: int, what: str) -> None:
    """Refuse a stream whose header declares more pixels than the limit, before decoding it."""
    limit = max_pixels()
    if width * height > limit:
        raise BitstreamError(
            f"{what}: stream declares {width}×{height} = {width * height:,} pixels, over the limit of {limit:,} "
            "(set ICM_MAX_PIXELS to raise it)"
        )


def load_rgb(source: str | Path | bytes, limit: int | None = None) -> np.ndarray:
    """Read an image file (path or bytes) as an upright H×W×3 uint8 RGB array."""
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    except FileNotFoundError:
        raise InputImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputImageError(f"{name}: is a directory, not an image") from None
    except OSError as exc:
        raise InputImageError(f"{name}: cannot open ({exc.strerror or exc})") from None
    with handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(handle)
                check_pixel_count(*img.size, limit)
                img.load()
                img = ImageOps.exif_transpose(img)
        except InputImageError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise InputImageError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputImageError(f"{name}: corrupt or truncated image ({exc})") from None
        return to_rgb_array(img, name)


def to_rgb_array(img: Image.Image, name: str = "image") -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        warnings.warn(f"{name}: {mode} image rounded to 8 bits per channel", IcmWarning, stacklevel=3)
        gray = np.clip(np.round(array * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        raise InputImageError(f"{name}: floating-point images are not supported")
    if "A" in mode or (mode == "P" and "transparency" in img.info):
        warnings.warn(f"{name}: alpha channel dropped (codecs code RGB only)", IcmWarning, stacklevel=3)
    if mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if mode == "P" else img.convert("RGB")
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise InputImageError(f"{name}: cannot convert mode {mode} to RGB")
    return np.ascontiguousarray(array)


def resize_shorter_side(image: np.ndarray, side: int, resample: Image.Resampling) -> np.ndarray:
    """Scale an H×W×3 image so its shorter side is ``side`` (aspect kept, neither side below ``side``)."""
    height, width = image.shape[:2]
    scale = side / min(height, width)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, resample))


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
