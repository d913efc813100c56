"""Mean-scale hyperprior (Minnen, Ballé, Toderici, NeurIPS 2018, without the autoregressive context).

::

    x ─g_a─▶ y ─h_a─▶ z ─Q─▶ ẑ ──[factorised prior]──▶ bits
                              │
                              h_s (exact integer) ─▶ μ, σ
    y ─Q(y − μ)─▶ ŷ − μ ──[Gaussian(σ)]──▶ bits
    ŷ ─g_s─▶ x̂

Widths are configurable; the defaults are chosen for CPU speed (see README's benchmark table).

Tiling is part of the decoding definition. ``decompress`` runs g_s on tiles of
:attr:`MeanScaleHyperprior.synthesis_tile` latent samples a side (near-equal tiles, geometry a function of
the latent size only), each grown by g_s's receptive field (:func:`~icmkit.models.tiling.synthesis_halo`),
on one intra-op thread per tile, tiles in parallel on ``decode_workers`` threads. Tiled and full-frame
synthesis agree up to float rounding (a pixel may land one level apart); what is fixed is that the same
stream decodes to the same pixels with any thread count, pool size or batch. ``compress`` tiles g_a the
same way on images over :attr:`MeanScaleHyperprior.analysis_tile` latent samples a side, to bound memory.
"""

from __future__ import annotations

import torch
from torch import nn

from icmkit.entropy.factorized import EntropyBottleneck
from icmkit.entropy.gaussian import GaussianConditional
from icmkit.layers.gdn import GDN
from icmkit.layers.integer import ACT_FRAC_BITS, ExactIntegerNet
from icmkit.models.base import CompressionModel
from icmkit.models.context import SYMBOL_LIMIT
from icmkit.models.registry import register_architecture
from icmkit.models.tiling import analysis_halo, resampling_factor, run_tiled, synthesis_halo, tile_grid
from icmkit.threads import single_threaded


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


@register_architecture
class MeanScaleHyperprior(CompressionModel):
    """A learned pixel codec model (the module's diagram): images ``(N, 3, H, W)`` in [0, 1], sides multiples of 64.

    Args:
        N: Channels of the transforms' hidden layers and of the hyper-latent ``z``.
        M: Channels of the latent ``y``.
    """

    architecture = "mean-scale-hyperprior"
    # Latent samples per tile side in decoding. It defines the decoded pixels (by float rounding), so it
    # is fixed for given weights; 32 (512 px) keeps the halo overhead under 10 % and tiles balanced.
    synthesis_tile: int = 32
    # Images over this many latent samples a side are analysed in tiles: 4K encodes in well under 4 GB.
    analysis_tile: int = 64
    # Threads that synthesise tiles in parallel; None: torch.get_num_threads(). Never changes the pixels.
    decode_workers: int | None = None
    stream_count = 2  # entropy-coded streams per image: y, z

    def __init__(self, N: int = 64, M: int = 160):
        super().__init__()
        self.M = M
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = nn.Sequential(
            deconv(M, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N)
        )
        self.h_s = nn.Sequential(
            deconv(N, M),
            nn.ReLU(inplace=True),
            deconv(M, M * 3 // 2),
            nn.ReLU(inplace=True),
            conv(M * 3 // 2, M * 2, 3, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()
        self.h_s_int = ExactIntegerNet(self.h_s)
        self.latent_scale = resampling_factor(self.g_a)  # pixels per latent sample
        self.analysis_halo = analysis_halo(self.g_a)
        self.synthesis_halo = synthesis_halo(self.g_s)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales, means = self.h_s(z_hat).chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def _quantize_integer_nets(self) -> None:
        self.h_s_int.quantize_from(self.h_s)

    def _entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact on any machine: (scale-table index, mean) for every element of y."""
        params = self.h_s_int(ExactIntegerNet.to_fixed(z_hat))
        scales_fixed, means_fixed = params[:, : self.M], params[:, self.M :]
        index = self.gaussian_conditional.index_from_fixed(scales_fixed, ACT_FRAC_BITS)
        return index, ExactIntegerNet.from_fixed(means_fixed).float()

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> dict:
        self.require_finalized()
        y = self.analyse(x)
        z_hat = torch.round(self.h_a(y)).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        index, means = self._entropy_parameters(z_hat)
        symbols = torch.round(y - means).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        y_strings = [self.gaussian_conditional.compress(symbols[i], index[i]) for i in range(len(x))]
        z_strings = [self.entropy_bottleneck.compress(z_hat[i]) for i in range(len(x))]
        return {"strings": [y_strings, z_strings], "shape": tuple(z_hat.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict:
        self.require_finalized()
        y_strings, z_strings = strings
        z_hat = torch.stack([self.entropy_bottleneck.decompress(s, shape) for s in z_strings])
        index, means = self._entropy_parameters(z_hat)
        symbols = torch.stack([self.gaussian_conditional.decompress(s, index[i]) for i, s in enumerate(y_strings)])
        x_hat = self.synthesise(symbols + means).clamp_(0, 1)
        return {"x_hat": x_hat}

    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        """y = g_a(x); in tiles on images over ``analysis_tile`` latent samples a side, so memory stays bounded."""
        height, width = (side // self.latent_scale for side in x.shape[-2:])
        tiles = tile_grid(height, width, self.analysis_tile, self.analysis_halo)
        y = x.new_empty(len(x), self.M, height, width)
        return run_tiled(self.g_a, x, y, tiles, scale_in=self.latent_scale)

    def synthesise(self, y_hat: torch.Tensor) -> torch.Tensor:
        """x̂ = g_s(ŷ) as decoding defines it: tile by tile, one intra-op thread per tile, tiles in parallel."""
        workers = self.decode_workers or torch.get_num_threads()
        height, width = y_hat.shape[-2:]
        tiles = tile_grid(height, width, self.synthesis_tile, self.synthesis_halo)
        scale = self.latent_scale
        x_hat = y_hat.new_empty(len(y_hat), self.g_s[-1].out_channels, height * scale, width * scale)
        with single_threaded():  # also makes the pool's fresh threads start with one intra-op thread
            return run_tiled(self._synthesise_tile, y_hat, x_hat, tiles, scale_out=scale, workers=workers)

    def _synthesise_tile(self, y_tile: torch.Tensor) -> torch.Tensor:
        # Set in every pool thread: torch's thread count (with OpenMP) and grad mode are per OS thread.
        with single_threaded(), torch.no_grad():
            return self.g_s(y_tile)
