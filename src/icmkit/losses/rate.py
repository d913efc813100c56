"""Rate term: estimated bits per input pixel from the entropy models' likelihoods."""

from __future__ import annotations

import torch
from torch import nn


def bits_per_pixel(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate from likelihoods, in bits per input pixel (batch total / batch pixels)."""
    total = sum(-torch.log2(lik).sum() for lik in likelihoods.values())
    return total / num_pixels


class RateLoss(nn.Module):
    """The rate term: a model output's likelihoods → estimated bits per pixel of the input batch."""

    def forward(self, output: dict, target: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = target.shape
        return bits_per_pixel(output["likelihoods"], batch * height * width)
