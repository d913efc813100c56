"""A classifier's evaluation transform: resize, centre crop, normalise — shared by the image path and the sender
of a feature stream, so that both feed the network the same tensor.

Kept below :mod:`icmkit.tasks` and :mod:`icmkit.codecs` (torch and torchvision only): the classifiers use it to
score images, and a feature codec uses it to code an image in its backbone's own geometry
(:class:`icmkit.geometry.ClassifierGeometry`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from icmkit.errors import InputImageError
from icmkit.image import check_rgb
from icmkit.limits import ENVIRONMENT, max_pixels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """How images become a classifier's input.

    Args:
        resize_size: an int resizes the shorter side to it (aspect kept); an ``(h, w)`` pair resizes to exactly
            that.
        crop_size: ``(h, w)`` of the centre crop (the network's input size).
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        mean: per-channel mean on [0, 1] pixel values.
        std: per-channel standard deviation on [0, 1] pixel values.
        antialias: whether downscaling low-pass filters first (torchvision's ``antialias``).
    """

    resize_size: int | tuple[int, int]
    crop_size: tuple[int, int]
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    antialias: bool = True

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of an ``height × width`` image after the resize (torchvision's rounding: the longer side
        is ``int(size · long / short)``)."""
        if not isinstance(self.resize_size, int):
            return tuple(self.resize_size)
        short, long = sorted((height, width))
        scaled_long = int(self.resize_size * long / short)
        return (self.resize_size, scaled_long) if height <= width else (scaled_long, self.resize_size)


STANDARD_IMAGENET = PreprocessConfig(resize_size=256, crop_size=(224, 224))


def preprocess_images(images: Iterable[np.ndarray], config: PreprocessConfig) -> torch.Tensor:
    """H×W×3 uint8 RGB arrays → normalised float32 batch ``(N, 3, h, w)`` on the CPU.

    Each image is resized and cropped on its own with the same tensor ops (uint8 resize with antialiasing,
    centre crop, then normalisation in float32), so an image gives the same input whatever the batch. A resize
    that would allocate more than the pixel limit (a 1-pixel-high panorama scaled to a 256-pixel short side) is
    refused before it runs.
    """
    interpolation = INTERPOLATIONS[config.interpolation]
    resize = [config.resize_size] if isinstance(config.resize_size, int) else list(config.resize_size)
    crops = []
    for i, image in enumerate(images):
        image = check_rgb(image, f"image {i}")
        resized = config.resized_size(*image.shape[:2])
        if resized[0] * resized[1] > max_pixels():
            raise InputImageError(
                f"image {i}: the classifier's resize of this {image.shape[1]}×{image.shape[0]} image "
                f"({resized[1]}×{resized[0]}) exceeds the pixel limit of {max_pixels():,} (set {ENVIRONMENT} to "
                "raise it)"
            )
        if not (image.flags.writeable and image.flags.c_contiguous):  # torch.from_numpy wants both
            image = np.array(image, order="C")
        t = torch.from_numpy(image).permute(2, 0, 1)
        t = TF.resize(t, resize, interpolation=interpolation, antialias=config.antialias)
        crops.append(TF.center_crop(t, list(config.crop_size)))
    if not crops:
        return torch.empty((0, 3, *config.crop_size), dtype=torch.float32)
    batch = torch.stack(crops).to(torch.float32).div_(255.0)
    return TF.normalize(batch, list(config.mean), list(config.std))
