"""Heat maps of feature maps, for the report's showcase of feature codecs (which decode no pixels).

The statistic is the channel-wise L2 norm of the features at each position, ``‖f(y, x)‖₂`` over the
``C`` channels: where the backbone's activations carry energy. A decoded map and the uncompressed one
share a colour scale (the uncompressed map's maximum), so the two can be compared by eye; each feature
sample becomes a ``stride×stride`` block of the coded image, and a white box marks the window of the
map the classifier's tail sees.
"""

from __future__ import annotations

import numpy as np

STATISTIC = "channel-wise L2 norm per position"
COLORMAP = "magma"


def feature_energy(features) -> np.ndarray:
    """``(1, C, h, w)`` or ``(C, h, w)`` features → ``(h, w)`` float32 channel-wise L2 norms."""
    array = np.asarray(features, dtype=np.float32)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected one feature map, got a batch of {array.shape[0]}")
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"features must be (1, C, h, w) or (C, h, w), not {array.shape}")
    return np.sqrt(np.square(array, dtype=np.float64).sum(axis=0)).astype(np.float32)


def energy_scale(energy: np.ndarray) -> float:
    """The value that maps to the top of the colour scale (the map's maximum; 1 for an all-zero map)."""
    peak = float(np.max(energy)) if energy.size else 0.0
    return peak if np.isfinite(peak) and peak > 0 else 1.0


def heatmap_image(
    energy: np.ndarray,
    scale: float,
    stride: int,
    image_size: tuple[int, int],
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """``H×W×3`` uint8 RGB: ``energy / scale`` through the colour map, each sample a ``stride``² block,
    cut to the coded image's size; ``window`` (``top, left, height, width`` in samples) is outlined."""
    from matplotlib import colormaps

    values = np.clip(np.nan_to_num(energy / scale, nan=0.0), 0.0, 1.0)
    rgb = (colormaps[COLORMAP](values)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    height, width = image_size
    picture = np.repeat(np.repeat(rgb, stride, axis=0), stride, axis=1)[:height, :width].copy()
    if window is not None:
        top, left, box_h, box_w = (int(v) * stride for v in window)
        bottom, right = min(top + box_h, height) - 1, min(left + box_w, width) - 1
        line = max(1, min(height, width) // 128)  # 2 px on a 256² crop
        white = np.array([255, 255, 255], np.uint8)
        picture[top : top + line, left : right + 1] = white
        picture[bottom - line + 1 : bottom + 1, left : right + 1] = white
        picture[top : bottom + 1, left : left + line] = white
        picture[top : bottom + 1, right - line + 1 : right + 1] = white
    return picture
