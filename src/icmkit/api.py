"""The Python API, mirroring the CLI: ``compress(image) -> bytes`` and ``decompress(bytes) -> image``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from icmkit.codecs.base import Codec, FeatureMaps, check_rgb
from icmkit.codecs.registry import get_codec
from icmkit.codecs.sniff import sniff_codec
from icmkit.errors import BitstreamError
from icmkit.image import load_rgb, to_rgb_array

DEFAULT_CODEC = "icm-mse"

ImageLike = str | Path | bytes | np.ndarray | Image.Image


def read_image(image: ImageLike) -> np.ndarray:
    """Anything image-like → H×W×3 uint8 RGB (paths and bytes are decoded, EXIF-rotated)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        return check_rgb(image)
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    return load_rgb(image)


def compress(image: ImageLike, codec: str | Codec = DEFAULT_CODEC, quality: int | None = None) -> bytes:
    """Compress an image with a registered codec (by name) at ``quality`` (the codec's default if None)."""
    codec = get_codec(codec) if isinstance(codec, str) else codec
    codec.require_available()
    return codec.encode(read_image(image), quality)


def codec_for_stream(data: bytes, codec: str | Codec | None = None) -> Codec:
    if isinstance(codec, Codec):
        return codec
    name = codec or sniff_codec(data)
    if name is None:
        raise BitstreamError("unrecognised stream: not .icm and no known image signature (pass codec=...)")
    found = get_codec(name)
    found.require_available()
    return found


def decompress(data: bytes, codec: str | Codec | None = None) -> np.ndarray | FeatureMaps:
    """Decode a stream; the codec is read from the ``.icm`` header or the format's signature."""
    return codec_for_stream(data, codec).decode(bytes(data))


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB over all 8-bit RGB samples (inf for identical images)."""
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def bits_per_pixel(num_bytes: int, image_shape: tuple[int, ...]) -> float:
    return 8.0 * num_bytes / (image_shape[0] * image_shape[1])
