"""Training images: every picture under some folders, random crops and horizontal flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from icmkit.image import IMAGE_SUFFIXES, image_to_tensor, load_rgb, resize_shorter_side


def find_images(folders: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"training folder not found: {folder}")
        files.extend(sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no images under {', '.join(map(str, folders))}")
    return files


class RandomCrops(Dataset):
    """Decodes every image once into memory (small training sets; decoding dominates otherwise).

    Items are random ``crop``² crops, flipped horizontally half the time: ``(3, crop, crop)`` tensors in [0, 1].
    Images smaller than the crop are padded by reflection.

    Args:
        files: The training images (see :func:`find_images`).
        crop: Side of the square crops, in pixels.
        seed: Seed of the crop positions and flips.
        resize: When > 0, each image is first scaled so its shorter side is ``resize`` (bicubic): crops then
            show objects at the scale the benchmark's resize-256 protocol shows them to a classifier.
    """

    def __init__(self, files: list[Path], crop: int, seed: int = 0, resize: int = 0):
        self.images = [_resize_shorter(load_rgb(f), resize) for f in files]
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def _padded(self, index: int) -> np.ndarray:
        """Image ``index``, padded by reflection to at least ``crop`` a side."""
        image = self.images[index]
        h, w, _ = image.shape
        if h < self.crop or w < self.crop:
            pad = ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)), (0, 0))
            image = np.pad(image, pad, mode="reflect")
        return image

    def center_crop(self, index: int) -> torch.Tensor:
        """The centre crop of image ``index`` (no randomness), padded by reflection when too small."""
        image = self._padded(index)
        h, w, _ = image.shape
        top, left = (h - self.crop) // 2, (w - self.crop) // 2
        return image_to_tensor(image[top : top + self.crop, left : left + self.crop])

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self._padded(index)
        h, w, _ = image.shape
        top = int(self.rng.integers(0, h - self.crop + 1))
        left = int(self.rng.integers(0, w - self.crop + 1))
        patch = image[top : top + self.crop, left : left + self.crop]
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        return image_to_tensor(patch)


def _resize_shorter(image: np.ndarray, side: int) -> np.ndarray:
    return resize_shorter_side(image, side, Image.Resampling.BICUBIC) if side > 0 else image
