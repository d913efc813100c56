"""Edge-replicated padding to the block size video encoders want, and the crop that undoes it."""

from __future__ import annotations

import numpy as np


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Replicate the last row/column up to ``height``×``width`` (cheap to code, no ringing)."""
    pad_h, pad_w = height - image.shape[0], width - image.shape[1]
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2), mode="edge")


def crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.ascontiguousarray(image[:height, :width])
