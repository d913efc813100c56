"""Quantisation and bounding helpers shared by the entropy models."""

from __future__ import annotations

import torch

LIKELIHOOD_BOUND = 1e-9  # floor on bin probabilities, keeps -log2 finite early in training


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        # Let the gradient through where it would lift a value from below the bound; a plain clamp
        # would freeze every scale that starts below it (the usual fate of freshly initialised ones).
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``max(x, bound)`` whose gradient still pushes values below the bound upwards."""
    return _LowerBound.apply(x, bound)
