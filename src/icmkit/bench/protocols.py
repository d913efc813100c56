"""How an evaluation image becomes the codec's input (the field's conventions, FIELD.md)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from icmkit.image import resize_shorter_side


def resize_center_crop(image: np.ndarray, size: int = 256) -> np.ndarray:
    """ImageNet protocol of ICM papers: shorter side → ``size`` (bilinear, antialiased), centre crop
    ``size``×``size``; bpp is then counted over those ``size``² pixels."""
    resized = resize_shorter_side(image, size, Image.Resampling.BILINEAR)
    new_h, new_w = resized.shape[:2]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])
