"""The training objective of a learned pixel codec, composed from the rate, distortion and perception terms.

``loss = bpp + λ · scale · distortion + β · perception`` where ``scale`` is 255² for MSE (CompressAI's λ
convention) and 1 for MS-SSIM, and ``perception`` is :class:`PerceptionConsistencyLoss` (β = 0: none).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from icmkit.losses.distortion import Distortion
from icmkit.losses.perception import PerceptionConsistencyLoss
from icmkit.losses.rate import RateLoss


def lmbda_at(lmbdas: list[float], quality: float) -> float:
    """λ of a continuous quality in ``[1, len(lmbdas)]``: log-linear between the grid's neighbours, the
    counterpart of the gain units' exponential interpolation."""
    if len(lmbdas) == 1:
        return lmbdas[0]
    position = quality - 1
    low = min(int(math.floor(position)), len(lmbdas) - 2)
    t = position - low
    return math.exp((1 - t) * math.log(lmbdas[low]) + t * math.log(lmbdas[low + 1]))


class CodecObjective(nn.Module):
    def __init__(
        self,
        lmbda: float,
        distortion: str = "mse",
        beta: float = 0.0,
        perception: PerceptionConsistencyLoss | None = None,
    ):
        super().__init__()
        if beta > 0 and perception is None:
            raise ValueError("beta > 0 needs a perception loss")
        self.lmbda = lmbda
        self.beta = beta
        self.rate = RateLoss()
        self.distortion = Distortion(distortion)
        self.perception = perception if beta > 0 else None

    def forward(self, output: dict, target: torch.Tensor, lmbda: float | None = None) -> dict[str, torch.Tensor]:
        """The loss and its parts; ``lmbda`` overrides λ for this step (variable-rate training)."""
        lmbda = self.lmbda if lmbda is None else lmbda
        x_hat = output["x_hat"]
        bpp = self.rate(output, target)
        distortion = self.distortion(x_hat, target)
        loss = bpp + lmbda * self.distortion.scale * distortion
        parts = {"bpp": bpp}
        if self.distortion.kind == "mse":
            parts["mse"] = distortion
        else:
            parts[self.distortion.kind] = distortion
            parts["mse"] = F.mse_loss(x_hat.detach(), target)
        if self.perception is not None:
            perception = self.perception(x_hat, target)
            loss = loss + self.beta * perception["perception"]
            parts.update(perception)
        parts["loss"] = loss
        return parts
