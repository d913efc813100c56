"""Hostile inputs built in memory for the resource-limit tests (small and fast to make; each is what a
larger attack looks like in miniature): JPEG scan bombs, animated PNGs, stream headers that declare more
than their bytes hold."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def noise_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment of a JPEG; an SOS segment's end includes its
    entropy-coded data (up to the next marker that is neither stuffing nor RSTn)."""
    segments, pos = [], 2
    while pos + 1 < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            segments.append((marker, pos, pos + 2))
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if marker == 0xDA:
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0x00 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                else:
                    break
        segments.append((marker, pos, end))
        pos = end
    return segments


def jpeg_with_scans(height: int, width: int, scans: int, seed: int | None = None) -> bytes:
    """A progressive JPEG of ``scans`` scans: Pillow's progressive file (10 scans) whose last scan (an AC
    refinement) is repeated. libjpeg only warns about the repeated refinements and decodes every scan over
    the whole image; a real encoder writes about 10. ``seed`` None: a flat grey image, whose scans hold almost
    no data (the attack's kind: thousands of scans in a small file)."""
    picture = Image.new("RGB", (width, height), (128, 128, 128)) if seed is None else noise_image(height, width, seed)
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(picture)).save(buffer, format="JPEG", quality=90, progressive=True)
    data = buffer.getvalue()
    segments = jpeg_segments(data)
    sos = [(start, end) for marker, start, end in segments if marker == 0xDA]
    if scans < len(sos):
        raise ValueError(f"Pillow's progressive JPEG already has {len(sos)} scans")
    start, end = sos[-1]
    return data[:end] + data[start:end] * (scans - len(sos)) + data[end:]


def animated_png(side: int, frames: int, sixteen_bit: bool = False) -> bytes:
    """An APNG of ``frames`` frames of ``side``×``side``, each a different flat colour (frame i has red = i);
    16-bit samples through imagecodecs (Pillow writes 8-bit APNG only)."""
    if sixteen_bit:
        import imagecodecs

        stack = np.zeros((frames, side, side, 3), np.uint16)
        stack[..., 0] = np.arange(frames, dtype=np.uint16)[:, None, None] * 257
        return bytes(imagecodecs.apng_encode(stack))
    images = [Image.new("RGB", (side, side), (i, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def features_file(
    image_size: tuple[int, int],
    stride: int = 8,
    channels: int = 40,
    dtype: str = "F16",
    metadata: dict[str, str] | None = None,
) -> bytes:
    """A decoded-features ``.safetensors`` (icmkit's layout, the classification tail of
    ``tf_efficientnet_lite0`` after ``blocks.2``) of zeros for an image of ``image_size`` (H, W), written
    byte by byte so that a large declared size costs only the tensor's bytes (F16 / F8_E4M3: 2 / 1 per value)."""
    import json
    import math

    height, width = image_size
    shape = [1, channels, math.ceil(height / stride), math.ceil(width / stride)]
    size = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1}[dtype] * math.prod(shape)
    meta = {
        "format": "icmkit.features/1",
        "backbone": "tf_efficientnet_lite0",
        "split": "blocks.2",
        "head_digest": "5e76a5a985f62235",
        "stride": str(stride),
        "image_size": f"{height}x{width}",
        **(metadata or {}),
    }
    header = json.dumps({"__metadata__": meta, "features": {"dtype": dtype, "shape": shape, "data_offsets": [0, size]}})
    header += " " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header.encode() + bytes(size)


def avif_with_small_ispe(height: int, width: int, declared: int = 16) -> bytes:
    """An AVIF coding a ``height``×``width`` frame whose ``ispe`` box (the size Pillow reports) says
    ``declared``×``declared``."""
    buffer = io.BytesIO()
    Image.fromarray(noise_image(height, width)).save(buffer, format="AVIF", quality=30, speed=10)
    data = bytearray(buffer.getvalue())
    at = data.find(b"ispe")
    data[at + 8 : at + 16] = declared.to_bytes(4, "big") * 2
    return bytes(data)
