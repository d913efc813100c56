"""The training objective of a feature codec (DICM's frozen-backbone stage, plus optional distillation).

``loss = bpp + λ_q · (w_f · MSE(f̂, f1) + Σ_k w_k · MSE(tail_k(f̂), tail_k(f1)) + w_d · b_q · KD(logits))
+ w_re · bpp_RE + w_re_d · MSE(f2, f1)``

- ``λ_q``: the trade-off of the quality the step trains (variable-rate models: one λ per gain unit);
- ``bpp``: estimated bits of what the stream carries (y and z) over the **input image's** pixels;
- ``MSE(f̂, f1)``: feature distortion at the split (normalised by ``f1``'s mean square, as the stage
  terms are), against the uncompressed head's features (the receiver's
  tail was trained on those, so they are the target rather than the RE-filtered ``f2``) — unless
  ``target="filtered"``: after DICM's stage 3 the tail was trained on RE's output, so its stage 4 matches
  ``f̂`` (and the tail stages and logits) to ``f2`` instead (``feature_target: filtered``);
- ``tail_k``: the L2 terms on later tail stages (DICM's layer2/3/4 terms), each normalised by the
  reference activation's mean square so that stages of different scales weigh as their ``w_k`` say;
- ``KD``: logit distillation against the uncompressed model (needs no labels); ``b_q = max(1, λ_floor / λ_q)``
  keeps its pull at low rates (``distill_floor``; 1 when off);
- ``bpp_RE``: the rate of the RE module's rounded latent (a training constraint; never transmitted), and
  ``MSE(f2, f1)`` (normalised) the RE module's own distortion — DICM trains RE first with rate + distortion
  (its stage 2); here both terms stay on while the compression network trains.

The backbone's tail is frozen; gradients flow through it into the codec.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from icmkit.backbones.split import SplitBackbone
from icmkit.losses.distill import logit_distillation
from icmkit.losses.rate import bits_per_pixel
from icmkit.tensors import to_float32

# What f̂ is matched to: the head's own features f1, or RE's output f2 (DICM's stage 4 after stage 3).
FEATURE_TARGETS = ("head", "filtered")


class FeatureObjective(nn.Module):
    """A feature codec's training loss (the module's formula); ``forward`` returns it with its terms.

    Args:
        backbone: The frozen split backbone whose head made the features; its tail scores the stage and
            distillation terms.
        lmbda: λ, or one λ per quality (gain unit) of a variable-rate model.
        feature_weight: ``w_f``, the weight of the normalised MSE at the split.
        stage_weights: ``w_k`` per tail stage name (``None`` or empty: no stage terms).
        distill_weight: ``w_d``, the weight of logit distillation (0: off).
        temperature: The distillation's softmax temperature.
        re_rate_weight: ``w_re``, the weight of the RE latent's rate (used when the model has an RE module).
        re_distortion_weight: ``w_re_d``, the weight of the RE module's normalised MSE(f2, f1).
        target: What ``f̂`` is matched to: ``"head"`` (f1) or ``"filtered"`` (RE's f2).
        distill_floor: The λ below which distillation keeps its pull (0: off): at a quality of λ_q below it, the
            distillation term weighs ``w_d · distill_floor / λ_q`` inside ``λ_q · (…)``, i.e. as it would at
            ``distill_floor``. At small λ the cheapest optimum of rate + λ · distortion is to send nothing (seen
            below λ ≈ 0.2); keeping the logits' pull constant makes the low-rate qualities keep what the
            classifier needs instead.
    """

    pixel_output = False  # no x_hat: the trainer reports feature MSE, not PSNR
    # The context the tail's passes run in: the trainer's autocast when it trains in mixed precision.
    tail_precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def __init__(
        self,
        backbone: SplitBackbone,
        lmbda: float | Sequence[float],
        feature_weight: float = 1.0,
        stage_weights: dict[str, float] | None = None,
        distill_weight: float = 0.0,
        temperature: float = 2.0,
        re_rate_weight: float = 0.0,
        re_distortion_weight: float = 0.0,
        target: str = "head",
        distill_floor: float = 0.0,
    ):
        super().__init__()
        if target not in FEATURE_TARGETS:
            raise ValueError(f"feature target must be one of {', '.join(FEATURE_TARGETS)}, got {target!r}")
        self.target = target
        stage_weights = dict(stage_weights or {})
        unknown = [s for s in stage_weights if s not in backbone.tail.stage_names]
        if unknown:
            raise ValueError(
                f"unknown tail stage(s) {', '.join(unknown)}; tail stages: {', '.join(backbone.tail.stage_names)}"
            )
        self.backbone = backbone
        self.lmbdas = [float(lmbda)] if isinstance(lmbda, (int, float)) else [float(v) for v in lmbda]
        self.feature_weight = feature_weight
        self.stage_weights = stage_weights
        self.distill_weight, self.temperature = distill_weight, temperature
        self.re_rate_weight, self.re_distortion_weight = re_rate_weight, re_distortion_weight
        self.distill_floor = distill_floor

    @property
    def runs_tail(self) -> bool:
        """Whether the loss runs the backbone's tail (stage terms or distillation)."""
        return bool(self.stage_weights) or self.distill_weight > 0

    def forward(self, output: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``output``: the model's forward dict plus ``"features"`` (f1); ``target``: the input images."""
        batch, _, height, width = target.shape
        pixels = batch * height * width
        likelihoods = dict(output["likelihoods"])
        re_likelihoods = likelihoods.pop("re", None)
        f_hat, f1 = output["f_hat"], output["features"]
        lmbda = self.lmbdas[output.get("quality", 1) - 1]  # qualities count from 1
        # The filtered target is RE's output taken as given: the codec must not pull RE towards itself.
        reference = output["f_filtered"].detach() if self.target == "filtered" else f1
        parts = {"bpp": bits_per_pixel(likelihoods, pixels), "mse": F.mse_loss(f_hat, reference)}
        parts["nmse"] = parts["mse"] / reference.pow(2).mean().clamp_min(1e-6)
        distortion = self.feature_weight * parts["nmse"]
        if self.runs_tail:
            with self.tail_precision():  # the tail's convolutions (bf16 where the trainer asks); terms in float32
                with torch.no_grad():
                    ref_logits, ref_stages = to_float32(self.backbone.tail(reference, return_stages=True))
                logits, stages = to_float32(self.backbone.tail(f_hat, return_stages=True))
            for name, ref, out in zip(self.backbone.tail.stage_names, ref_stages, stages):
                if name in self.stage_weights:
                    value = F.mse_loss(out, ref) / ref.pow(2).mean().clamp_min(1e-6)
                    parts[f"stage/{name}"] = value
                    distortion = distortion + self.stage_weights[name] * value
            if self.distill_weight > 0:
                parts["distill"] = logit_distillation(logits, ref_logits, self.temperature)
                boost = max(1.0, self.distill_floor / lmbda)
                distortion = distortion + self.distill_weight * boost * parts["distill"]
            parts["agree"] = (logits.argmax(1) == ref_logits.argmax(1)).float().mean()
        loss = parts["bpp"] + lmbda * distortion
        if re_likelihoods is not None:
            parts["bpp_re"] = bits_per_pixel({"re": re_likelihoods}, pixels)
            parts["nmse_re"] = F.mse_loss(output["f_filtered"], f1) / f1.pow(2).mean().clamp_min(1e-6)
            loss = loss + self.re_rate_weight * parts["bpp_re"] + self.re_distortion_weight * parts["nmse_re"]
        parts["loss"] = loss
        return parts


class FeatureCodecTraining(nn.Module):
    """Images → frozen head → codec: the module a trainer optimises (and DDP wraps) for a feature codec.

    Args:
        backbone: The frozen split backbone whose head computes the features ``f1``.
        codec: The feature codec model being trained (e.g. :class:`~icmkit.models.DICMFeatureModel`).
    """

    def __init__(self, backbone: SplitBackbone, codec: nn.Module):
        super().__init__()
        self.backbone, self.codec = backbone, codec

    def forward(self, x: torch.Tensor, quality: int = 1) -> dict:
        with torch.no_grad():
            features = self.backbone.features(x)
        output = self.codec(features, quality)
        output["features"] = features
        return output


def parse_stage_weights(names: Sequence[str], weights: Sequence[float]) -> dict[str, float]:
    if weights and len(weights) != len(names):
        raise ValueError("one weight per tail stage is needed")
    return {name: (weights[i] if weights else 1.0) for i, name in enumerate(names)}
