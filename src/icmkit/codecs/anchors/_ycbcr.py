"""Full-range BT.601 YCbCr (the JFIF/BPG convention) between RGB images and integer planes.

The video anchors code YCbCr planes that icmkit itself converts, rather than leaving the colour
conversion to a library, so that both ends use one matrix and one rounding:

* ``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cb = (B - Y) / 1.772``, ``Cr = (R - Y) / 1.402`` on
  ``[0, 1]`` RGB; the inverse is the exact matrix inverse, so only quantisation rounds.
* Full range at any bit depth ``n`` (ITU-T H.273): ``Y' = round((2^n - 1) Y)``,
  ``C' = round((2^n - 1) C + 2^(n-1))`` — at 8 bits exactly JPEG's and BPG's ``-c ycbcr``.
* 4:2:0 chroma is the 2×2 mean (centre-sited, as in JPEG) and comes back by bilinear
  interpolation at the same siting. Streams carry no VUI: our decoder is the only consumer.

8-bit RGB → 8-bit YCbCr 4:4:4 → RGB is off by at most 1–2 levels; at 10 bits, at most 1.
"""

from __future__ import annotations

import numpy as np

KR, KB = 0.299, 0.114
KG = 1.0 - KR - KB
_RGB_TO_YCBCR = np.array(
    [
        [KR, KG, KB],
        [-0.5 * KR / (1 - KB), -0.5 * KG / (1 - KB), 0.5],
        [0.5, -0.5 * KG / (1 - KR), -0.5 * KB / (1 - KR)],
    ]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def _sample_dtype(bit_depth: int) -> type[np.unsignedinteger]:
    return np.uint8 if bit_depth <= 8 else np.uint16


def _quantize(plane: np.ndarray, bit_depth: int, chroma: bool) -> np.ndarray:
    peak = (1 << bit_depth) - 1
    offset = (1 << (bit_depth - 1)) if chroma else 0
    return np.clip(np.rint(plane * peak + offset), 0, peak).astype(_sample_dtype(bit_depth))


def _dequantize(codes: np.ndarray, bit_depth: int, chroma: bool) -> np.ndarray:
    offset = (1 << (bit_depth - 1)) if chroma else 0
    return (codes.astype(np.float64) - offset) / ((1 << bit_depth) - 1)


def _downsample2(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _upsample2(plane: np.ndarray, axis: int) -> np.ndarray:
    # Each output sample sits a quarter step from its source sample: weights 3/4 and 1/4.
    n = plane.shape[axis]
    before = np.take(plane, np.maximum(np.arange(n) - 1, 0), axis=axis)
    after = np.take(plane, np.minimum(np.arange(n) + 1, n - 1), axis=axis)
    even, odd = 0.75 * plane + 0.25 * before, 0.75 * plane + 0.25 * after
    return np.stack([even, odd], axis=axis + 1).reshape(plane.shape[:axis] + (2 * n,) + plane.shape[axis + 1 :])


def rgb_to_planes(image: np.ndarray, bit_depth: int, subsample: bool) -> list[np.ndarray]:
    """``H×W×3`` uint8 RGB → integer ``[Y, Cb, Cr]``; 4:2:0 needs even ``H`` and ``W``."""
    ycc = (image.astype(np.float64) / 255.0) @ _RGB_TO_YCBCR.T
    planes = [ycc[..., 0]]
    planes += [_downsample2(ycc[..., c]) if subsample else ycc[..., c] for c in (1, 2)]
    return [_quantize(p, bit_depth, chroma=i > 0) for i, p in enumerate(planes)]


def planes_to_rgb(planes: list[np.ndarray], bit_depth: int) -> np.ndarray:
    """Inverse of :func:`rgb_to_planes`; chroma planes half the luma size are upsampled."""
    y = _dequantize(planes[0], bit_depth, chroma=False)
    chroma = []
    for codes in planes[1:]:
        c = _dequantize(codes, bit_depth, chroma=True)
        if c.shape != y.shape:
            c = _upsample2(_upsample2(c, 0), 1)
        chroma.append(c)
    rgb = np.stack([y, *chroma], axis=-1) @ _YCBCR_TO_RGB.T
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
