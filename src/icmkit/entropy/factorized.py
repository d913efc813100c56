"""Fully factorised density for hyper-latents (Ballé et al., ICLR 2018, appendix 6.1).

Each channel's cumulative distribution is a small monotone network ``c(x)``; the likelihood of a
quantisation bin is ``c(x + ½) − c(x − ½)``. ``quantiles`` track each channel's tail points and are
trained by :meth:`aux_loss` only — they decide the support of the coding tables built by :meth:`update`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from icmkit.deprecation import renamed
from icmkit.entropy._tables import HasTables, pad_rows
from icmkit.entropy.coder import decode_with_tables, encode_with_tables
from icmkit.entropy.quantize import LIKELIHOOD_BOUND, lower_bound, ste_round
from icmkit.errors import BitstreamError


class EntropyBottleneck(HasTables):
    """The fully factorised density of hyper-latents ``z``, and its range coder (CompressAI's name for the layer).

    Args:
        channels: Channels of ``z``; each has its own density.
        filters: Hidden widths of each channel's CDF network.
        init_scale: Initial spread of the density and of the tail quantiles (±init_scale, in quantisation bins).
        tail_mass: Probability left outside the quantiles; :meth:`update` gives it to each channel's escape bin.
    """

    def __init__(self, channels: int, filters=(3, 3, 3), init_scale: float = 10.0, tail_mass: float = 1e-9):
        super().__init__()
        self.channels = channels
        self.tail_mass = tail_mass
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        target = math.log(2 / tail_mass - 1)
        self.register_buffer("_target", torch.tensor([-target, 0.0, target]), persistent=False)
        self._init_tables()

    def _logits_cdf(self, x: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """``x``: (C, 1, N) → logits of the CDF, same shape."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            if detach:
                matrix, bias = matrix.detach(), bias.detach()
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                factor = self.factors[i].detach() if detach else self.factors[i]
                x = x + torch.tanh(factor) * torch.tanh(x)
        return x

    def _likelihood_cn(self, x: torch.Tensor) -> torch.Tensor:
        lower = self._logits_cdf(x - 0.5)
        upper = self._logits_cdf(x + 0.5)
        # Evaluate on the side of the median where sigmoids do not saturate.
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def forward(self, z: torch.Tensor, training: bool | None = None):
        """Return ``(z_tilde, z_hat, likelihoods)``: noisy latents for the rate, STE-rounded for the
        synthesis (what the decoder will see), and per-element likelihoods."""
        training = self.training if training is None else training
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if training else torch.round(z)
        flat = z_noisy.transpose(0, 1).reshape(self.channels, 1, -1)
        lik = self._likelihood_cn(flat).reshape(self.channels, z.shape[0], *z.shape[2:]).transpose(0, 1)
        return ste_round(z), lower_bound(lik, LIKELIHOOD_BOUND)

    def aux_loss(self) -> torch.Tensor:
        logits = self._logits_cdf(self.quantiles, detach=True)
        return torch.abs(logits - self._target).sum()

    @torch.no_grad()
    def update(self) -> None:
        """Build the coding tables: each channel's pmf over its integer support plus an escape bin."""
        lo = torch.floor(self.quantiles[:, 0, 0]).long()
        hi = torch.maximum(torch.ceil(self.quantiles[:, 0, 2]).long(), lo)
        length = hi - lo + 1
        support = lo.reshape(-1, 1, 1) + torch.arange(int(length.max())).reshape(1, 1, -1)
        pmf = self._likelihood_cn(support.float()).double()[:, 0]
        rows = []
        for c in range(self.channels):
            row = pmf[c, : int(length[c])].clamp_min(0)
            escape = (1 - row.sum()).clamp_min(self.tail_mass)
            rows.append(torch.cat([row, escape.reshape(1)]))
        self.set_tables(pad_rows(rows), lo, length)

    def compress(self, z_hat: torch.Tensor) -> bytes:
        """Code integer latents ``z_hat`` of shape (C, H, W) channel by channel."""
        self._require_tables()
        index = torch.arange(self.channels).reshape(-1, 1, 1).expand_as(z_hat)
        return encode_with_tables(z_hat.long().numpy(), index.numpy(), self.tables())

    def decompress(self, data: bytes, size: tuple[int, int]) -> torch.Tensor:
        self._require_tables()
        if self.tables().count != self.channels:
            raise BitstreamError("coding tables do not match the model")
        index = torch.arange(self.channels).reshape(-1, 1, 1).expand(self.channels, *size)
        return torch.from_numpy(decode_with_tables(data, index.numpy(), self.tables())).float()


__getattr__ = renamed(__name__, {"FactorizedPrior": "icmkit.entropy.factorized:EntropyBottleneck"})
