"""Per-channel standardisation of a backbone's head features, with statistics measured on training data."""

from __future__ import annotations

import torch
from torch import nn


class FeatureStatistics(nn.Module):
    """Mixin of models that work on standardised head features: ``feature_mean`` and ``feature_std`` buffers
    ``(1, C, 1, 1)`` (saved with the weights), set once from data before training.

    Why: the layers then never have to learn the scale of the backbone's activations (std ≈ 7 at Lite0's
    blocks.2, heavy-tailed) from their initialisation."""

    def _register_feature_statistics(self, channels: int) -> None:
        self.register_buffer("feature_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, channels, 1, 1))

    @torch.no_grad()
    def set_feature_statistics(self, features: torch.Tensor) -> None:
        """Per-channel mean and standard deviation of a batch of head features (call once, before training)."""
        self.feature_mean.copy_(features.mean(dim=(0, 2, 3), keepdim=True))
        self.feature_std.copy_(features.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3))

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.feature_mean) / self.feature_std

    def restore(self, f: torch.Tensor) -> torch.Tensor:
        return f * self.feature_std + self.feature_mean
