"""How an evaluation image becomes the codec's input (the field's conventions, FIELD.md)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_center_crop(image: np.ndarray, size: int = 256) -> np.ndarray:
    """ImageNet protocol of ICM papers: shorter side → ``size`` (bilinear, antialiased), centre crop
    ``size``×``size``; bpp is then counted over those ``size``² pixels."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])
