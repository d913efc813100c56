"""Generalized divisive normalization (Ballé et al., ICLR 2016), the nonlinearity of learned codecs.

Written here rather than imported because torchvision and timm do not ship it and CompressAI (which
does) pins numpy<2; it is a dozen lines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NonNegative(nn.Module):
    """Reparametrise a non-negative parameter as ``p²`` with a floor, so gradients stay useful near 0.

    Args:
        minimum: The smallest value the parameter takes.
        reparam_offset: Its square is added under the square root of :meth:`init`, so that ``p`` never
            reaches 0, where the gradient of ``p²`` vanishes.
    """

    def __init__(self, minimum: float = 0.0, reparam_offset: float = 2**-18):
        super().__init__()
        self.pedestal = reparam_offset**2
        self.register_buffer("_bound", torch.tensor((minimum + self.pedestal) ** 0.5), persistent=False)

    def init(self, value: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(value + self.pedestal, min=self.pedestal))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.maximum(p, self._bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j²)``; ``inverse=True`` multiplies instead (IGDN).

    Args:
        channels: Channels of ``x`` (``(N, C, H, W)``), normalised across each other.
        inverse: IGDN, the synthesis transforms' nonlinearity, instead of GDN.
        beta_min: Floor of ``beta``, keeping the denominator away from 0.
        gamma_init: Initial diagonal of ``gamma`` (off-diagonal entries start at 0).
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = NonNegative(minimum=beta_min)
        self.gamma_reparam = NonNegative()
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(channels, channels, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm
