"""Training images: every picture under some folders, random crops and horizontal flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from icmkit.image import IMAGE_SUFFIXES, load_rgb


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
    """Decodes every image once into memory (small training sets; decoding dominates otherwise)."""

    def __init__(self, files: list[Path], crop: int, seed: int = 0):
        self.images = [load_rgb(f) for f in files]
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        h, w, _ = image.shape
        if h < self.crop or w < self.crop:
            pad = ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)), (0, 0))
            image = np.pad(image, pad, mode="reflect")
            h, w, _ = image.shape
        top = int(self.rng.integers(0, h - self.crop + 1))
        left = int(self.rng.integers(0, w - self.crop + 1))
        patch = image[top : top + self.crop, left : left + self.crop]
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        return torch.from_numpy(np.array(patch)).permute(2, 0, 1).float().div_(255)
