"""Perception consistency (seed 000, Yang et al., ACM MM 2020): keep a frozen pretrained network's feature
*distributions* on decoded images close to those on the originals, measured by MMD².

How feature maps become samples: a layer's output ``(B, C, H, W)`` gives ``B·H·W`` samples, each the
``C``-channel vector at one spatial position of one image. Why: a CNN's later layers and its head consume
exactly these local descriptors (pooling over positions), so their distribution is what recognition
depends on; treating positions as samples also gives enough samples per batch for a stable MMD estimate
(8 crops of 128² give 8,192 positions at stride 4). MMD compares distributions, not pairs, so the decoder
may move details around as long as the descriptors it produces stay typical of the original image.
To bound cost (the kernel matrix is quadratic), at most ``samples`` positions are drawn per layer, the
same positions in the original and in the decoded batch (paired draws lower the estimate's variance).

Optional logit distillation (Hinton et al. 2015): ``T²·KL(softmax(t(x)/T) ‖ softmax(t(x̂)/T))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from icmkit.losses.distill import logit_distillation
from icmkit.losses.mmd import DEFAULT_BANDWIDTH_MULTIPLIERS, mmd2_unbiased

# Ends of EfficientNet-Lite stages at strides 4, 8, 16 and 32 (timm module names).
DEFAULT_LAYERS = ("blocks.1", "blocks.2", "blocks.4", "blocks.6")


class FeatureTap(nn.Module):
    """A frozen network that returns the outputs of named layers (forward hooks) and its logits.

    Inputs are images in [0, 1]; the network's own normalisation is applied here. The network stays in
    eval mode and never receives gradients; gradients flow through it to the input.

    Args:
        net: The network (e.g. a classifier's model); frozen here, and hooked in place.
        layers: Names of the modules whose outputs are returned (as in ``net.named_modules()``).
        mean: Per-channel RGB mean of the network's input normalisation.
        std: Per-channel RGB standard deviation, likewise.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        modules = dict(net.named_modules())
        unknown = [name for name in layers if name not in modules]
        if unknown:
            examples = ", ".join(n for n in list(modules)[1:40] if n.count(".") <= 1)
            raise ValueError(f"unknown layer(s) {', '.join(unknown)}; this network has e.g. {examples}")
        if not layers:
            raise ValueError("at least one feature layer is needed")
        self.net = net.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self._captured: dict[str, torch.Tensor] = {}
        for name in self.layers:
            modules[name].register_forward_hook(self._capture(name))

    @classmethod
    def from_classifier(cls, classifier, layers: Sequence[str]) -> FeatureTap:
        """From an :class:`icmkit.pretrained.classifiers.Classifier` (any timm / torchvision name)."""
        cfg = classifier.preprocess_config
        return cls(classifier.model, layers, cfg.mean, cfg.std)

    def _capture(self, name: str):
        def hook(_module, _inputs, output):
            self._captured[name] = output

        return hook

    def train(self, mode: bool = True) -> FeatureTap:
        super().train(mode)
        self.net.eval()  # batch-norm statistics of the frozen network must never move
        return self

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        self._captured = {}
        logits = self.net((x - self.mean) / self.std)
        features, self._captured = self._captured, {}
        return features, logits


def position_samples(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B·H·W, C)``: one sample per image position (see the module docstring)."""
    if features.dim() == 2:
        return features
    return features.flatten(2).transpose(1, 2).reshape(-1, features.shape[1])


class PerceptionConsistencyLoss(nn.Module):
    """Σ_l w_l · MMD²(features_l(x), features_l(x̂)) + distill_weight · KD(logits).

    Returns a dict: ``"perception"`` (the weighted total), ``"mmd/<layer>"`` per layer and, when enabled,
    ``"distill"``.

    Args:
        tap: The frozen network and the layers compared.
        layer_weights: ``w_l``, one per layer of ``tap`` (``None``: all 1).
        samples: The most positions drawn per layer (the kernel matrix is quadratic in it); at least 2.
        multipliers: The Gaussian kernels' bandwidths, as multiples of the median squared distance.
        distill_weight: The weight of logit distillation (0: off).
        temperature: The distillation's softmax temperature ``T``.
    """

    def __init__(
        self,
        tap: FeatureTap,
        layer_weights: Sequence[float] | None = None,
        samples: int = 1024,
        multipliers: Sequence[float] = DEFAULT_BANDWIDTH_MULTIPLIERS,
        distill_weight: float = 0.0,
        temperature: float = 2.0,
    ):
        super().__init__()
        weights = tuple(layer_weights) if layer_weights else (1.0,) * len(tap.layers)
        if len(weights) != len(tap.layers):
            raise ValueError(f"{len(weights)} layer weights for {len(tap.layers)} layers")
        if samples < 2:
            raise ValueError("samples must be at least 2")
        self.tap = tap
        self.layer_weights = weights
        self.samples = samples
        self.multipliers = tuple(multipliers)
        self.distill_weight = distill_weight
        self.temperature = temperature

    def forward(self, x_hat: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            reference, reference_logits = self.tap(target)
        decoded, decoded_logits = self.tap(x_hat)
        parts: dict[str, torch.Tensor] = {}
        total = x_hat.new_zeros(())
        for name, weight in zip(self.tap.layers, self.layer_weights):
            a, b = position_samples(reference[name]), position_samples(decoded[name])
            if a.shape[0] > self.samples:
                picks = torch.randperm(a.shape[0], device=a.device)[: self.samples]
                a, b = a[picks], b[picks]
            value = mmd2_unbiased(a.float(), b.float(), self.multipliers)
            parts[f"mmd/{name}"] = value
            total = total + weight * value
        if self.distill_weight > 0:
            distill = logit_distillation(decoded_logits, reference_logits, self.temperature)
            parts["distill"] = distill
            total = total + self.distill_weight * distill
        parts["perception"] = total
        return parts
