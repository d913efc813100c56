"""Semantic-guided views for MoCo: activation-map boxes, ContrastiveCrop sampling, MoCo v2 augmentations.

DICM's "semantic guidance" (ContrastiveCrop, Peng et al., CVPR 2022): the query backbone's last feature map
says where the object is — channel sum, min–max normalised, bilinearly upsampled to the image, thresholded —
and the bounding box of that salient region steers the random crops, so that both views of an image show
the object rather than background. It is an activation map, not a class-specific Grad-CAM.

Boxes are ``(x0, y0, x1, y1)`` fractions of the image's width and height: they are computed on the image
squashed to a square and hold for the image at any size. Before the first refresh every box is the whole
image (``WHOLE_IMAGE``) and the sampling is that of RandomResizedCrop with Beta-placed centres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)
CROP_SCALE = (0.2, 1.0)  # MoCo v2's RandomResizedCrop area range
CROP_RATIO = (3 / 4, 4 / 3)


def whole_image_boxes(count: int) -> torch.Tensor:
    return torch.tensor([WHOLE_IMAGE] * count, dtype=torch.float32).reshape(count, 4)


def activation_boxes(feature_map: torch.Tensor, size: tuple[int, int], threshold: float = 0.1) -> torch.Tensor:
    """Feature maps ``(N, C, h, w)`` of images of ``size`` (H, W) → boxes ``(N, 4)`` around the region where
    the normalised activation reaches ``threshold``; the whole image where the map is flat."""
    heat = feature_map.float().sum(dim=1, keepdim=True)
    low = heat.amin(dim=(2, 3), keepdim=True)
    high = heat.amax(dim=(2, 3), keepdim=True)
    heat = (heat - low) / (high - low).clamp_min(1e-12)
    salient = F.interpolate(heat, size=size, mode="bilinear", align_corners=False)[:, 0] >= threshold
    flat = (high - low).flatten() <= 1e-12
    boxes = []
    for mask, is_flat in zip(salient, flat):
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        if is_flat or rows.numel() == 0:
            boxes.append(WHOLE_IMAGE)
            continue
        height, width = size
        x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        boxes.append((x0 / width, y0 / height, x1 / width, y1 / height))
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


@torch.no_grad()
def compute_boxes(
    encoder, images: Sequence[torch.Tensor], size: int, threshold: float = 0.1, batch: int = 32
) -> torch.Tensor:
    """Activation boxes of uint8 ``(3, H, W)`` images, each squashed to ``size``², from ``encoder.feature_map``
    (in eval mode: running BN statistics, so an image's box does not depend on its companions)."""
    was_training = encoder.training
    encoder.eval()
    device = encoder.mean.device
    try:
        boxes = []
        for start in range(0, len(images), batch):
            squares = [TF.resize(image, [size, size], antialias=True) for image in images[start : start + batch]]
            pixels = torch.stack(squares).to(device, torch.float32).div_(255)
            boxes.append(activation_boxes(encoder.feature_map(pixels), (size, size), threshold))
        return torch.cat(boxes) if boxes else whole_image_boxes(0)
    finally:
        encoder.train(was_training)


def sample_crop(
    rng: np.random.Generator,
    height: int,
    width: int,
    box: Sequence[float] = WHOLE_IMAGE,
    alpha: float = 0.6,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
) -> tuple[int, int, int, int]:
    """ContrastiveCrop: a crop ``(top, left, h, w)`` of an image of ``height`` × ``width``.

    Area and aspect are drawn as RandomResizedCrop draws them; the centre is drawn from Beta(α, α) across the
    box (α < 1 favours the box's edges, so two views overlap less than uniform centres would, yet stay on the
    object); the crop is then clipped to the image (shrinking, not shifting, as ContrastiveCrop does)."""
    w, h = width, height  # RandomResizedCrop's fallback after ten misses: the whole image
    for _ in range(10):
        area = height * width * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        tw, th = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < tw <= width and 0 < th <= height:
            w, h = tw, th
            break
    x0, y0, x1, y1 = box
    cx = (x0 + rng.beta(alpha, alpha) * (x1 - x0)) * width
    cy = (y0 + rng.beta(alpha, alpha) * (y1 - y0)) * height
    left, top = _clipped_span(cx, w, width), _clipped_span(cy, h, height)
    return top[0], left[0], top[1] - top[0], left[1] - left[0]


def _clipped_span(centre: float, length: int, limit: int) -> tuple[int, int]:
    """``[start, end)`` of ``length`` pixels around ``centre``, clipped to ``[0, limit)``, at least one pixel."""
    start = min(max(0, math.floor(centre - length / 2)), limit - 1)
    end = max(min(limit, math.floor(centre - length / 2) + length), start + 1)
    return start, end


def moco_v2_augmentation(size: int) -> v2.Compose:
    """MoCo v2's photometric augmentations and flip, on a crop already resized to ``size``²; uint8 → [0, 1]."""
    blur_kernel = 2 * (size // 20) + 1  # ≈ 10 % of the side: SimCLR's 23 px at 224
    return v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(blur_kernel, sigma=(0.1, 2.0))], p=0.5),
            v2.RandomHorizontalFlip(),
        ]
    )


class ContrastiveViews:
    """Two MoCo v2 views of training images: box-guided crops resized to ``size``², then augmented.

    :attr:`boxes` starts as the whole images and is replaced at each refresh. :meth:`pairs` draws everything
    from its ``seed`` alone (crop geometry from a NumPy generator, the torchvision transforms from torch's global
    generator inside a forked, reseeded state), so a batch is a function of (seed, step, rank) and a resumed
    run redraws it exactly.

    Args:
        images: The training images, uint8 ``(3, H, W)`` tensors of any sizes.
        size: Side of the square views, in pixels.
        alpha: α of the Beta(α, α) that places crop centres across the box (< 1 favours its edges).
    """

    def __init__(self, images: list[torch.Tensor], size: int, alpha: float = 0.6):
        self.images = images
        self.size = size
        self.alpha = alpha
        self.boxes = whole_image_boxes(len(images))
        self.augment = moco_v2_augmentation(size)

    def __len__(self) -> int:
        return len(self.images)

    def view(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        image = self.images[index]
        top, left, h, w = sample_crop(rng, image.shape[1], image.shape[2], self.boxes[index].tolist(), self.alpha)
        crop = TF.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        return self.augment(crop)

    def pairs(self, indices: Sequence[int], seed: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Query and key views ``(len(indices), 3, size, size)`` in [0, 1] of the images at ``indices``."""
        rng = np.random.default_rng(list(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**63)))
            queries = torch.stack([self.view(i, rng) for i in indices])
            keys = torch.stack([self.view(i, rng) for i in indices])
        return queries, keys
