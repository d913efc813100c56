"""The objective of a receiver-side restoration filter: pixel distortion + β · perception consistency.

``loss = λ · scale · distortion(x̂, x) + β · perception(x̂, x)`` — :class:`~icmkit.losses.objective.CodecObjective`
without the rate (the base codec's stream is fixed; the codec objective adds its rate to this one), on the same λ
and β scales, so a filter's β reads like a learned pixel codec's (``icm-mmd``'s recipe: β = 5 beside
λ·255²·MSE). λ matters only through β / λ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icmkit.losses.distortion import Distortion
from icmkit.losses.perception import PerceptionConsistencyLoss


class RestorationObjective(nn.Module):
    """A restoration filter's loss: λ · distortion + β · perception consistency (``icm-mmd``'s without the rate).

    Args:
        lmbda: weight λ of the distortion (times 255² for MSE, as in CompressAI).
        distortion: ``mse`` or ``ms-ssim``.
        beta: weight of the perception term; 0 trains pure artefact reduction.
        perception: the perception-consistency loss, needed when ``beta`` > 0.
    """

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
        self.lmbda, self.beta = lmbda, beta
        self.distortion = Distortion(distortion)
        self.perception = perception if beta > 0 else None

    def forward(self, x_hat: torch.Tensor, target: torch.Tensor, lmbda: float | None = None) -> dict[str, torch.Tensor]:
        """The loss and its parts; ``lmbda`` overrides λ for this call (a variable-rate codec's step)."""
        distortion = self.distortion(x_hat, target)
        loss = (self.lmbda if lmbda is None else lmbda) * self.distortion.scale * distortion
        parts = {"mse": distortion if self.distortion.kind == "mse" else F.mse_loss(x_hat.detach(), target)}
        if self.distortion.kind != "mse":
            parts[self.distortion.kind] = distortion
        if self.perception is not None:
            perception = self.perception(x_hat, target)
            loss = loss + self.beta * perception["perception"]
            parts.update(perception)
        parts["loss"] = loss
        return parts


__all__ = ["RestorationObjective"]
