"""DICM feature codec (Tang, Yi, Wang, IEEE Trans. Broadcasting 2025): codes a frozen backbone's features.

::

    f1 ─std─RE─▶ f2 ─g_a─▶ ·gain[q] ─▶ y ─h_a─▶ z ─Q─▶ ẑ ──[factorised prior]──▶ bits
                                                        │
                                                        h_s (exact integer) ──▶ hyper
           ŷ anchors  ─Q(y − μ_a)─[Gaussian(σ_a)]─▶ bits      e(hyper, 0) ──▶ μ_a, σ_a
           ŷ others   ─Q(y − μ_n)─[Gaussian(σ_n)]─▶ bits      e(hyper, ctx(ŷ anchors)) ──▶ μ_n, σ_n
    ŷ ─·inverse_gain[q]─g_s─▶ un-std ─▶ f3 ─▶ the backbone's tail

- **std**: features are standardised per channel with statistics measured on training data (buffers).
- **RE** (redundancy elimination, :class:`RedundancyElimination`): a sender-side filter. Conv2Former
  blocks take the features down ``re_levels`` stride-2 steps, the latent is rounded (its rate and the
  filter's own distortion are training terms — the latent is never transmitted), a mirrored decoder
  returns ``f2``.
- **g_a / g_s**: gnConv (HorNet) blocks and ``latent_levels`` stride-2 (transposed) convolutions.
- **h_a**: a transformer over ``y``'s positions, then two stride-2 convolutions: ``z`` at 1/4 of ``y``.
- **Two-pass checkerboard context** (He et al., CVPR 2021): anchors (``(i + j)`` even) are coded from the
  hyperprior alone; the others also from a convolution over the decoded anchors.
- **Variable rate**: ``qualities`` gain vectors (Cui et al., CVPR 2021) scale ``y`` channel-wise before
  quantisation and back before synthesis — one set of weights serves every rate point.

Everything that picks a probability table on the decoder side — ``h_s``, the context convolution and the
entropy-parameter network ``e`` — runs as :class:`~icmkit.layers.integer.ExactIntegerNet` (integer
arithmetic, so encoder and decoder agree bit for bit on any machine). That forces deviations from the
paper, whose hyper-synthesis and context model are transformers: here ``h_s`` is transposed convolutions
with ReLUs and the context model one 5×5 convolution (the "no checkerboard" ablation measures what the
context buys). ``g_s`` runs on one intra-op thread per image, so decoded features do not depend on the
thread count or batching. Shipped files leave out the float twins of the integer networks
(:attr:`float_twins`).

The paper splits ResNet-50 at stride 4 and puts ``y`` at 1/4 of that map (H/16) and RE's latent at 1/8
(H/32). With EfficientNet-Lite0 split at stride 8, ``latent_levels=1`` keeps ``y`` at the paper's H/16; RE's
depth is configurable and chosen by measurement (README, "Feature codec").

The model works on features (``forward(f1, quality)``, ``compress(f1, quality)``); the codec layer
(:mod:`icmkit.codecs.feature`) runs the backbone's head. ``config`` names the backbone, the split and
the head's weights digest, so weights can only be used with the head they were trained on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.layers import LayerNorm2d
from torch import nn

from icmkit.deprecation import renamed
from icmkit.entropy.factorized import EntropyBottleneck
from icmkit.entropy.gaussian import GaussianConditional
from icmkit.layers.conv2former import Conv2FormerBlock
from icmkit.layers.gnconv import HorBlock, ResidualConvBlock
from icmkit.layers.integer import ExactIntegerNet
from icmkit.layers.transformer import TokenTransformer
from icmkit.models.base import CompressionModel
from icmkit.models.context import TableChoice, table_choice, training_parameters
from icmkit.models.feature_statistics import FeatureStatistics
from icmkit.models.latent import LatentCoding, initial_gains
from icmkit.models.registry import register_architecture
from icmkit.threads import single_threaded

BLOCKS = {"gnconv": HorBlock, "conv": ResidualConvBlock}
CONTEXTS = ("checkerboard", "none")
# "integer": h_s as transposed convolutions run exactly in integers (what ships: bit-exact decoding).
# "attention": the paper's choice, a transformer block in h_s, run in float — decoding is then only
# reproducible on the machine that encoded, so it exists to measure what the integer deviation costs.
HYPER_SYNTHESES = ("integer", "attention")


def _down(cin: int, cout: int, kernel: int = 5) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=2, padding=kernel // 2)


def _up(cin: int, cout: int, kernel: int = 5) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=kernel // 2, output_padding=1)


class RedundancyElimination(nn.Module):
    """Sender-side information filter ``f1 → f2`` with a rate-constrained bottleneck (DICM's RE module).

    Args:
        channels: Channels of the (standardised) features it filters; ``f2`` has as many.
        width: Channels of its Conv2Former blocks.
        latent: Channels of the rounded latent.
        depths: Conv2Former blocks at each level; each level is one stride-2 step, so the latent lies at
            ``1 / 2**len(depths)`` of the feature map.
    """

    def __init__(self, channels: int, width: int = 64, latent: int = 96, depths: tuple[int, ...] = (1, 1, 2)):
        super().__init__()
        encoder: list[nn.Module] = [nn.Conv2d(channels, width, 1)]
        for level, depth in enumerate(depths):
            out = latent if level == len(depths) - 1 else width
            encoder += [Conv2FormerBlock(width) for _ in range(depth)]
            encoder += [nn.Conv2d(width, out, 3, stride=2, padding=1), LayerNorm2d(out)]
        decoder: list[nn.Module] = []
        for level, depth in enumerate(reversed(depths)):
            decoder += [_up(latent if level == 0 else width, width), LayerNorm2d(width)]
            decoder += [Conv2FormerBlock(width) for _ in range(depth)]
        decoder.append(nn.Conv2d(width, channels, 1))
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)
        self.prior = EntropyBottleneck(latent)
        self.factor = 1 << len(depths)
        # The latent leaves a LayerNorm with std ≈ 1: scaled by 4 it starts well above the rounding step, else
        # rounding would pass almost nothing and the rate term would win before the encoder learns to spread it.
        with torch.no_grad():
            self.encoder[-1].weight.fill_(4.0)

    @classmethod
    def at_levels(cls, channels: int, width: int, latent: int, levels: int) -> RedundancyElimination:
        """``levels`` stride-2 steps with the paper's block depths: (1, 1, 2) at three levels, (…, 1, 2) at others."""
        if levels < 1:
            raise ValueError(f"an RE module needs at least one level, got {levels}")
        return cls(channels, width, latent, (1,) * (levels - 1) + (2,))

    def forward(self, f1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f2, likelihoods of the rounded latent)``."""
        latent_hat, likelihoods = self.prior(self.encoder(f1))
        return self.decoder(latent_hat), likelihoods

    @torch.no_grad()
    def filter(self, f1: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.round(self.encoder(f1)))


@register_architecture
class DICMFeatureModel(LatentCoding, FeatureStatistics, CompressionModel):
    """The DICM feature codec model (the module's diagram): codes a split backbone's features ``(N, C, H, W)``.

    All arguments are stored in :attr:`config`, which a weights file keeps to rebuild the model.

    Args:
        channels: Channels of the features it codes (the head's output).
        backbone: Name of the classifier whose head makes the features (empty: not recorded).
        split: The stage the head ends at.
        head_digest: Hex digest of the head's weights, so that the codec refuses another head.
        N: Channels of ``g_a`` / ``g_s``.
        M: Channels of the latent ``y``.
        hyper: Channels of the hyper-latent ``z`` and of ``h_a`` / ``h_s``.
        re_levels: Stride-2 steps of the RE module (0: no RE module).
        re_width: Channels of the RE module's blocks.
        re_latent: Channels of the RE module's latent.
        block: The blocks of ``g_a`` / ``g_s``: ``"gnconv"`` (HorNet) or ``"conv"`` (plain; an ablation).
        context: ``"checkerboard"`` (two-pass context) or ``"none"`` (hyperprior alone; an ablation).
        gnconv_order: Interaction order of the gnConv blocks.
        transformer_depth: Transformer blocks in ``h_a`` (and in ``h_s`` with ``hyper_synthesis="attention"``).
        qualities: Rate points (gain vectors) one set of weights serves.
        latent_levels: Stride-2 steps from the features to ``y``: ``y`` lies at ``1 / 2**latent_levels`` of them.
        hyper_synthesis: ``"integer"`` (``h_s`` exact in integers: bit-exact decoding, what ships) or
            ``"attention"`` (the paper's transformer, float: reproducible only where it encoded; an ablation).
    """

    architecture = "dicm-feature"
    # Float networks whose exact-integer twins are what coding runs: shipped files leave them out.
    float_twins = ("h_s", "context", "entropy_parameters")

    def __init__(
        self,
        channels: int,
        backbone: str = "",
        split: str = "",
        head_digest: str = "",
        N: int = 64,
        M: int = 128,
        hyper: int = 64,
        re_levels: int = 2,
        re_width: int = 48,
        re_latent: int = 64,
        block: str = "gnconv",
        context: str = "checkerboard",
        gnconv_order: int = 3,
        transformer_depth: int = 1,
        qualities: int = 1,
        latent_levels: int = 2,
        hyper_synthesis: str = "integer",
    ):
        super().__init__()
        if block not in BLOCKS or context not in CONTEXTS or hyper_synthesis not in HYPER_SYNTHESES:
            raise ValueError(
                f"block must be one of {list(BLOCKS)}, context one of {list(CONTEXTS)} and hyper_synthesis one of "
                f"{list(HYPER_SYNTHESES)}"
            )
        self.M = M
        self.re = RedundancyElimination.at_levels(channels, re_width, re_latent, re_levels) if re_levels > 0 else None
        make = BLOCKS[block]
        if latent_levels < 1:
            raise ValueError("latent_levels must be ≥ 1")
        analysis: list[nn.Module] = [nn.Conv2d(channels, N, 1), make(N, gnconv_order)]
        synthesis: list[nn.Module] = []
        for level in range(latent_levels):
            last = level == latent_levels - 1
            analysis += [_down(N, M)] if last else [_down(N, N), make(N, gnconv_order)]
            synthesis += [_up(M if level == 0 else N, N), make(N, gnconv_order)]
        self.g_a = nn.Sequential(*analysis)
        self.g_s = nn.Sequential(*synthesis, nn.Conv2d(N, channels, 1))
        self.h_a = nn.Sequential(
            nn.Conv2d(M, hyper, 1),
            TokenTransformer(hyper, transformer_depth),
            _down(hyper, hyper, 3),
            nn.GELU(),
            _down(hyper, hyper, 3),
        )
        attention = [TokenTransformer(hyper, transformer_depth)] if hyper_synthesis == "attention" else []
        self.h_s = nn.Sequential(
            _up(hyper, hyper),
            nn.ReLU(),
            _up(hyper, hyper),
            nn.ReLU(),
            *attention,
            nn.Conv2d(hyper, 2 * M, 3, padding=1),
        )
        self.qualities = qualities
        self.use_context = context == "checkerboard"
        self.context = nn.Sequential(nn.Conv2d(M, M, 5, padding=2)) if self.use_context else None
        params_in = 3 * M if self.use_context else 2 * M
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(params_in, 2 * M, 1), nn.ReLU(), nn.Conv2d(2 * M, 2 * M, 1), nn.ReLU(), nn.Conv2d(2 * M, 2 * M, 1)
        )
        # Variable rate (gain units, Cui et al., CVPR 2021): quality q scales y channel-wise by gain[q]
        # before quantisation and by inverse_gain[q] before synthesis — one set of weights, several rates.
        self.gain, self.inverse_gain = initial_gains(qualities, M)
        self._init_latent_gains()
        self.entropy_bottleneck = EntropyBottleneck(hyper)
        self.gaussian_conditional = GaussianConditional()
        self.h_s_int = ExactIntegerNet(self.h_s) if not attention else None
        if attention:  # the float h_s is what codes: not a twin to leave out of shipped files
            self.float_twins = tuple(name for name in self.float_twins if name != "h_s")
        self.context_int = ExactIntegerNet(self.context) if self.use_context else None
        self.entropy_parameters_int = ExactIntegerNet(self.entropy_parameters)
        # The transforms see standardised features and g_s's output is mapped back (FeatureStatistics).
        self._register_feature_statistics(channels)
        # Feature samples per latent sample of y, and the multiple the feature map's sides must be.
        self.latent_scale = 1 << latent_levels  # feature samples per y sample
        self.hyper_scale = 4 * self.latent_scale  # feature samples per z sample
        self.feature_stride = max(self.hyper_scale, self.re.factor if self.re is not None else 1)

    @torch.no_grad()
    def _init_latent_gains(self) -> None:
        """Start with latents well above the quantisation step: with default initialisation y's std is
        ≈ 0.2, so rounding would pass almost nothing and the rate term would win before the transforms learn
        to spread them (seen: no progress in 150 steps). RE's latent is scaled by RedundancyElimination."""
        self.g_a[-1].weight.mul_(10.0)
        self.g_s[0].weight.div_(10.0)

    # -- training (gains(quality), quality in 1…qualities: LatentCoding's) ------------------------------
    def forward(self, f1: torch.Tensor, quality: float = 1) -> dict:
        likelihoods = {}
        gain, inverse_gain = self.gains(quality)
        f2 = self.standardise(f1)
        if self.re is not None:
            f2, likelihoods["re"] = self.re(f2)
        y = self.g_a(f2) * gain
        z_hat, likelihoods["z"] = self.entropy_bottleneck(self.h_a(y))
        hyper = self.h_s(z_hat)
        if self.use_context:
            first = self.entropy_parameters(torch.cat([hyper, torch.zeros_like(y)], 1))
            params = training_parameters(
                y, first, lambda y_anchor: self.entropy_parameters(torch.cat([hyper, self.context(y_anchor)], 1))
            )
        else:
            params = self.entropy_parameters(hyper)
        scales, means = params.chunk(2, 1)
        y_hat, likelihoods["y"] = self.gaussian_conditional(y, scales, means)
        f_hat = self.restore(self.g_s(y_hat * inverse_gain))
        return {"f_hat": f_hat, "f_filtered": self.restore(f2), "likelihoods": likelihoods, "quality": quality}

    def transmitted(self, likelihoods: dict) -> dict:
        """The likelihoods of what the bitstream carries (RE's latent is a training term, never sent)."""
        return {k: v for k, v in likelihoods.items() if k != "re"}

    # -- coding -----------------------------------------------------------------------------------
    def _quantize_integer_nets(self) -> None:
        if self.h_s_int is not None:
            self.h_s_int.quantize_from(self.h_s)
        self.entropy_parameters_int.quantize_from(self.entropy_parameters)
        if self.use_context:
            self.context_int.quantize_from(self.context)

    def _hyper_fixed(self, z_hat: torch.Tensor) -> torch.Tensor:
        """h_s(ẑ) in fixed point: exact integers, or (the attention ablation) the float network rounded."""
        if self.h_s_int is not None:
            return self.h_s_int(ExactIntegerNet.to_fixed(z_hat))
        return torch.round(ExactIntegerNet.to_fixed(self.h_s(z_hat)))

    def _table_choice(self, params_fixed: torch.Tensor) -> TableChoice:
        return table_choice(params_fixed, self.M, self.gaussian_conditional)

    def _passes(self, z_hat: torch.Tensor) -> tuple[TableChoice, Callable[[torch.Tensor], TableChoice] | None]:
        """The first pass's table choice and the second pass (a function of the decoded anchors)."""
        hyper_fixed = self._hyper_fixed(z_hat)
        if not self.use_context:
            return self._table_choice(self.entropy_parameters_int(hyper_fixed)), None
        no_context = hyper_fixed.new_zeros(len(hyper_fixed), self.M, *hyper_fixed.shape[-2:])
        first = self._table_choice(self.entropy_parameters_int(torch.cat([hyper_fixed, no_context], 1)))

        def second(y_anchor_fixed: torch.Tensor) -> TableChoice:
            context = self.context_int(y_anchor_fixed)
            return self._table_choice(self.entropy_parameters_int(torch.cat([hyper_fixed, context], 1)))

        return first, second

    def filter(self, f1: torch.Tensor) -> torch.Tensor:
        """Standardised, RE-filtered features: what g_a analyses."""
        f2 = self.standardise(f1)
        return self.re.filter(f2) if self.re is not None else f2

    @torch.no_grad()
    def compress(self, f1: torch.Tensor, quality: float = 1) -> dict:
        """Features ``(N, C, H, W)`` (H, W multiples of :attr:`feature_stride`) at ``quality`` (1…qualities)
        → streams [y anchors, y others, z]."""
        self.require_finalized()
        return self.code_latents(self.g_a(self.filter(f1)) * self.gains(quality)[0])

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], quality: float = 1) -> dict:
        """Streams of :meth:`compress` and ``z``'s (H, W) → ``{"f_hat": (N, C, H·s, W·s)}``, s = feature_stride."""
        self.require_finalized()
        inverse_gain = self.gains(quality)[1]
        y_hat = self.decode_latents(strings, shape)
        with single_threaded():  # decoded features independent of the thread count and of batching
            f_hat = torch.cat([self.restore(self.g_s(y_hat[i : i + 1] * inverse_gain)) for i in range(len(y_hat))])
        return {"f_hat": f_hat}


__getattr__ = renamed(__name__, {"DICMFeatureCodec": "icmkit.models.dicm:DICMFeatureModel"})
