"""Pixel distortion terms, on images in [0, 1], scaled as CompressAI scales them.

``mse``: λ·255²·MSE is the trade-off term (returned value is the plain MSE; the objective scales it).
``ms-ssim``: 1 − MS-SSIM (pytorch-msssim, the implementation CompressAI uses); the objective scales it by λ
alone, as CompressAI's MS-SSIM models do. Five scales need crops of at least 161 pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MS_SSIM_MIN_CROP = 161
DISTORTIONS = ("mse", "ms-ssim")


class Distortion(nn.Module):
    """A pixel codec's distortion term: MSE or 1 − MS-SSIM of ``(x_hat, target)``; :attr:`scale` goes with λ.

    Args:
        kind: ``"mse"`` or ``"ms-ssim"`` (which needs crops of at least 161 pixels).
    """

    def __init__(self, kind: str = "mse"):
        super().__init__()
        if kind not in DISTORTIONS:
            raise ValueError(f"unknown distortion {kind!r}; known: {', '.join(DISTORTIONS)}")
        self.kind = kind
        # λ multiplies this; 255² keeps λ on CompressAI's MSE scale (0.0018 … 0.0483).
        self.scale = 255.0**2 if kind == "mse" else 1.0

    def forward(self, x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return F.mse_loss(x_hat, target)
        from pytorch_msssim import ms_ssim

        return 1.0 - ms_ssim(x_hat.clamp(0, 1), target, data_range=1.0)
