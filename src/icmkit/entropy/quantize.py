"""Quantisation helpers shared by the entropy models."""

from __future__ import annotations

import torch

LIKELIHOOD_BOUND = 1e-9  # floor on bin probabilities, keeps -log2 finite early in training


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()
