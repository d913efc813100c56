"""The terms that train DICM's redundancy-elimination (RE) module: its latent's rate and its own distortion.

- ``bpp_re``: estimated bits of RE's rounded latent per **input image** pixel (factorised prior; a training
  constraint — the latent is never transmitted);
- ``l1_re``: mean ``|f2 − f1|`` between RE's output and its input, both **standardised** per channel with the
  statistics the module carries (:class:`~icmkit.models.redundancy.RedundancyFilter`), so that one weight suits
  any backbone's activation scale. The reference takes L1 on ResNet-50's raw layer1 activations, whose scale is
  close to 1 as well.

Stage 2 (:class:`RedundancyObjective`) weighs them ``re_rate_weight`` / ``re_distortion_weight`` (the reference:
1 / 128); stage 3 adds them to InfoNCE with ``ssl_rate_weight`` / ``ssl_distortion_weight`` (0.1 / 0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icmkit.losses.rate import bits_per_pixel


def redundancy_terms(output: dict, pixels: int) -> dict[str, torch.Tensor]:
    """``bpp_re`` and ``l1_re`` of a :class:`~icmkit.models.redundancy.RedundancyFilter` output for images of
    ``pixels`` pixels in all."""
    return {
        "bpp_re": bits_per_pixel(output["likelihoods"], pixels),
        "l1_re": F.l1_loss(output["filtered"], output["target"]),
    }


class RedundancyObjective(nn.Module):
    """DICM's stage 2: ``rate_weight · bpp_re + distortion_weight · l1_re`` (the backbone is frozen).

    Args:
        rate_weight: The weight of the RE latent's rate (the reference's 1).
        distortion_weight: The weight of the standardised L1 distortion (the reference's 128).
    """

    pixel_output = False  # no x_hat: the trainer reports no PSNR

    def __init__(self, rate_weight: float = 1.0, distortion_weight: float = 128.0):
        super().__init__()
        self.rate_weight, self.distortion_weight = rate_weight, distortion_weight

    def forward(self, output: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``output``: the filter's forward dict; ``target``: the input images (for the pixel count)."""
        batch, _, height, width = target.shape
        parts = redundancy_terms(output, batch * height * width)
        parts["loss"] = self.rate_weight * parts["bpp_re"] + self.distortion_weight * parts["l1_re"]
        return parts
