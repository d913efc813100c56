"""Variable-rate mean-scale hyperprior with a two-pass checkerboard context: the pixel codecs' design v2.

::

    x ─g_a─▶ ·gain(q) ─▶ y ─h_a─▶ z ─Q─▶ ẑ ──[factorised prior]──▶ bits
                                          │
                                          h_s (exact integer) ──▶ hyper = (σ, μ) of the plain hyperprior
      ŷ anchors ─Q(y − μ_a)─[Gaussian(σ_a)]─▶ bits      hyper + e(hyper, 0)                ──▶ σ_a, μ_a
      ŷ others  ─Q(y − μ_n)─[Gaussian(σ_n)]─▶ bits      hyper + e(hyper, ctx(ŷ anchors))   ──▶ σ_n, μ_n
    ŷ ─·inverse_gain(q)─g_s─▶ x̂

- **One model, every rate** (gain units, Cui et al., CVPR 2021; :mod:`icmkit.models.context`): quality
  ``q ∈ [1, qualities]`` is continuous; integer ``q`` are the rate points trained at the λ grid, values in
  between interpolate the neighbouring gain vectors. Training draws ``q`` uniformly from the whole range
  (λ interpolated log-linearly), so the in-between values are trained too.
- **Checkerboard context** (He et al., CVPR 2021): the entropy-parameter network ``e`` refines the
  hyperprior's ``(σ, μ)`` residually, from the hyperprior alone for anchors and with a 5×5 convolution over
  the decoded anchors for the rest. ``e``'s last layer starts at zero, so a fresh model *is* the plain
  hyperprior: weights of a trained :class:`~icmkit.models.hyperprior.MeanScaleHyperprior` of the same
  widths load into it (``init_from``) and training starts from their rate–distortion point.
- h_s, the context convolution and ``e`` run as exact-integer networks (bit-exact tables on any machine);
  shipped files omit their float twins. Quality enters decoding only through the header (which gains) and
  the synthesis, never through the tables.

Transforms, tiling and thread-independent synthesis are :class:`MeanScaleHyperprior`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from icmkit.layers.integer import ExactIntegerNet
from icmkit.models.context import TableChoice, table_choice, training_parameters
from icmkit.models.hyperprior import MeanScaleHyperprior
from icmkit.models.latent import LatentCoding, initial_gains
from icmkit.models.registry import register_architecture

CONTEXTS = ("checkerboard", "none")


@register_architecture
class VariableRateHyperprior(LatentCoding, MeanScaleHyperprior):
    """The pixel codecs' model (the module's diagram): one set of weights, a continuous quality in ``[1, qualities]``.

    Args:
        N: Channels of the transforms' hidden layers and of the hyper-latent ``z``.
        M: Channels of the latent ``y``.
        qualities: Rate points (gain vectors), trained one per λ of the grid.
        context: ``"checkerboard"`` (two-pass context) or ``"none"`` (hyperprior alone; an ablation).
    """

    architecture = "variable-rate-hyperprior"
    float_twins = ("h_s", "context", "entropy_parameters")
    stream_count = 3  # y anchors, y others (empty without context), z

    def __init__(self, N: int = 64, M: int = 160, qualities: int = 7, context: str = "checkerboard"):
        super().__init__(N, M)
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {list(CONTEXTS)}")
        if qualities < 1:
            raise ValueError("qualities must be ≥ 1")
        self.qualities = qualities
        self.use_context = context == "checkerboard"
        self.gain, self.inverse_gain = initial_gains(qualities, M)
        self.context = nn.Sequential(nn.Conv2d(M, M, 5, padding=2)) if self.use_context else None
        params_in = 3 * M if self.use_context else 2 * M
        self.entropy_parameters = nn.Sequential(nn.Conv2d(params_in, 2 * M, 1), nn.ReLU(), nn.Conv2d(2 * M, 2 * M, 1))
        with torch.no_grad():  # the residual starts at zero: a fresh model is the plain hyperprior
            self.entropy_parameters[-1].weight.zero_()
            self.entropy_parameters[-1].bias.zero_()
        self.context_int = ExactIntegerNet(self.context) if self.use_context else None
        self.entropy_parameters_int = ExactIntegerNet(self.entropy_parameters)

    # -- rate knob (gains(quality): LatentCoding's) ----------------------------------------------
    @torch.no_grad()
    def set_gains_for(self, lmbdas: Sequence[float], reference_lmbda: float) -> None:
        """Start the gains of a warm-started model at ``sqrt(λ_q / λ_ref)``: at high rate the MSE-optimal
        quantisation step scales as ``1/sqrt(λ)``, and ``λ_ref`` is the λ the loaded transforms were trained at."""
        if len(lmbdas) != self.qualities:
            raise ValueError(f"{len(lmbdas)} λ for {self.qualities} qualities")
        spread = torch.tensor([math.sqrt(v / reference_lmbda) for v in lmbdas], dtype=self.gain.dtype)
        self.gain.copy_(spread.reshape(-1, 1).expand_as(self.gain))
        self.inverse_gain.copy_((1 / spread).reshape(-1, 1).expand_as(self.inverse_gain))

    # -- training ---------------------------------------------------------------------------------
    def _refine(self, hyper: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        inputs = hyper if context is None else torch.cat([hyper, context], 1)
        return hyper + self.entropy_parameters(inputs)

    def forward(self, x: torch.Tensor, quality: float | None = None) -> dict:
        quality = self.qualities if quality is None else quality
        gain, inverse_gain = self.gains(quality)
        y = self.g_a(x) * gain
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        hyper = self.h_s(z_hat)
        if self.use_context:
            first = self._refine(hyper, torch.zeros_like(y))
            params = training_parameters(y, first, lambda y_anchor: self._refine(hyper, self.context(y_anchor)))
        else:
            params = self._refine(hyper, None)
        scales, means = params.chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means)
        x_hat = self.g_s(y_hat * inverse_gain)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "quality": quality}

    # -- coding -----------------------------------------------------------------------------------
    def _quantize_integer_nets(self) -> None:
        self.h_s_int.quantize_from(self.h_s)
        self.entropy_parameters_int.quantize_from(self.entropy_parameters)
        if self.use_context:
            self.context_int.quantize_from(self.context)

    def _refine_fixed(self, hyper_fixed: torch.Tensor, context_fixed: torch.Tensor | None) -> TableChoice:
        inputs = hyper_fixed if context_fixed is None else torch.cat([hyper_fixed, context_fixed], 1)
        params = hyper_fixed + self.entropy_parameters_int(inputs)  # a sum of integers: exact
        return table_choice(params, self.M, self.gaussian_conditional)

    def _passes(self, z_hat: torch.Tensor) -> tuple[TableChoice, Callable[[torch.Tensor], TableChoice] | None]:
        """The first pass's table choice and the second pass (a function of the decoded anchors)."""
        hyper_fixed = self.h_s_int(ExactIntegerNet.to_fixed(z_hat))
        if not self.use_context:
            return self._refine_fixed(hyper_fixed, None), None
        zeros = hyper_fixed.new_zeros(len(hyper_fixed), self.M, *hyper_fixed.shape[-2:])
        first = self._refine_fixed(hyper_fixed, zeros)
        return first, lambda anchors_fixed: self._refine_fixed(hyper_fixed, self.context_int(anchors_fixed))

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float | None = None) -> dict:
        """Images ``(N, 3, H, W)`` in [0, 1] (H, W multiples of 64) → streams [y anchors, y others, z]."""
        self.require_finalized()
        quality = self.qualities if quality is None else quality
        return self.code_latents(self.analyse(x) * self.gains(quality)[0])

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], quality: float | None = None) -> dict:
        self.require_finalized()
        quality = self.qualities if quality is None else quality
        y_hat = self.decode_latents(strings, shape)
        return {"x_hat": self.synthesise(y_hat * self.gains(quality)[1]).clamp_(0, 1)}
