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


def coding_view(codec, detection_size: tuple[int, int] | None = None):
    """The codec as the benchmark runs it: every codec codes the same input (the crop above, or the whole image
    for detection), and a feature codec codes that input whole — the full geometry, or the detector's own
    resize with ``detection_size`` — rather than its classifier's resize and centre crop of it, so bpp is
    counted over the same pixels as every other codec's (the published feature codecs' protocol)."""
    if getattr(codec, "kind", None) is None or codec.kind.value != "feature" or not hasattr(codec, "for_full_image"):
        return codec
    return codec.for_detection(*detection_size) if detection_size is not None else codec.for_full_image()
