"""Rate + pixel distortion, CompressAI's convention: ``λ·255²·MSE + bpp``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bits_per_pixel(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate from likelihoods, in bits per input pixel (batch total / batch pixels)."""
    total = sum(-torch.log2(lik).sum() for lik in likelihoods.values())
    return total / num_pixels


class RateDistortionLoss(nn.Module):
    def __init__(self, lmbda: float):
        super().__init__()
        self.lmbda = lmbda

    def forward(self, output: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, height, width = target.shape
        bpp = bits_per_pixel(output["likelihoods"], batch * height * width)
        mse = F.mse_loss(output["x_hat"], target)
        return {"loss": self.lmbda * 255**2 * mse + bpp, "bpp": bpp, "mse": mse}
