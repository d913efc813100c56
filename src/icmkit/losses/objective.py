"""The training objective of a learned pixel codec, composed from the rate, distortion and perception terms.

``loss = bpp + λ · scale · distortion + β · perception`` where ``scale`` is 255² for MSE (CompressAI's λ
convention) and 1 for MS-SSIM, and ``perception`` is :class:`PerceptionConsistencyLoss` (β = 0: none).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from icmkit.losses.perception import PerceptionConsistencyLoss
from icmkit.losses.rate import RateLoss
from icmkit.losses.restoration import RestorationObjective


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
    """``bpp + λ·scale·distortion + β·perception``: the rate beside a receiver's objective
    (:class:`~icmkit.losses.restoration.RestorationObjective`, the same terms without a rate).

    Args:
        lmbda: λ, the weight of the distortion (times 255² for MSE, as in CompressAI).
        distortion: ``"mse"`` or ``"ms-ssim"``.
        beta: β, the weight of the perception term (0: none).
        perception: The perception-consistency loss; needed when ``beta`` > 0.
    """

    def __init__(
        self,
        lmbda: float,
        distortion: str = "mse",
        beta: float = 0.0,
        perception: PerceptionConsistencyLoss | None = None,
    ):
        super().__init__()
        self.rate = RateLoss()
        self.pixels = RestorationObjective(lmbda, distortion, beta, perception)

    @property
    def lmbda(self) -> float:
        return self.pixels.lmbda

    @property
    def perception(self) -> PerceptionConsistencyLoss | None:
        return self.pixels.perception

    def forward(self, output: dict, target: torch.Tensor, lmbda: float | None = None) -> dict[str, torch.Tensor]:
        """The loss and its parts; ``lmbda`` overrides λ for this step (variable-rate training)."""
        bpp = self.rate(output, target)
        parts = {"bpp": bpp, **self.pixels(output["x_hat"], target, lmbda)}
        parts["loss"] = bpp + parts["loss"]
        return parts
