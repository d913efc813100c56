"""A contact sheet of training images with their crop boxes: whether the boxes find the objects, at a glance."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from icmkit.fileio import atomic_write

BOX_COLOUR = (255, 40, 40)


def write_contact_sheet(
    images: Sequence[np.ndarray | torch.Tensor],
    boxes: torch.Tensor | Sequence[Sequence[float]],
    path: str | Path,
    thumbnail: int = 96,
    columns: int | None = None,
) -> Path:
    """Write a grid PNG of ``images`` (uint8: ``(3, H, W)`` tensors or ``H×W×3`` arrays), each shrunk to fit
    ``thumbnail``² with its box ``(x0, y0, x1, y1)`` (fractions of width and height) drawn on it."""
    count = len(images)
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    sheet = Image.new("RGB", (columns * thumbnail, rows * thumbnail), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for index, (image, box) in enumerate(zip(images, boxes)):
        picture = Image.fromarray(_as_array(image))
        picture.thumbnail((thumbnail, thumbnail))
        left = (index % columns) * thumbnail + (thumbnail - picture.width) // 2
        top = (index // columns) * thumbnail + (thumbnail - picture.height) // 2
        sheet.paste(picture, (left, top))
        x0, y0, x1, y1 = (float(v) for v in box)
        corners = (left + x0 * picture.width, top + y0 * picture.height)
        draw.rectangle((*corners, left + x1 * picture.width - 1, top + y1 * picture.height - 1), outline=BOX_COLOUR)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
    return Path(path)


def _as_array(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image, dtype=np.uint8)
