"""Gaussian conditional entropy model with a fixed scale table (Ballé et al. 2018; Minnen et al. 2018).

Latents are coded as ``round(y − μ)`` against a zero-mean Gaussian whose scale is the smallest entry of a
fixed, log-spaced scale table that is ≥ the predicted σ. Choosing the table entry is an integer
comparison on fixed-point scales (see :mod:`icmkit.layers.integer`), so the decoder picks the same
integer CDF as the encoder on any machine.
"""

from __future__ import annotations

import math

import torch

from icmkit.entropy._tables import HasTables, pad_rows
from icmkit.entropy.coder import decode_with_tables, encode_with_tables
from icmkit.entropy.quantize import LIKELIHOOD_BOUND, lower_bound, ste_round

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def default_scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS, dtype=torch.float64))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2))


class GaussianConditional(HasTables):
    """The entropy model of latents ``y`` given a predicted mean and scale, and its range coder.

    Args:
        scale_table: Ascending scales (σ, in quantisation bins) with one coding table each; ``None``: 64
            log-spaced scales from 0.11 to 256 (:func:`default_scale_table`).
        tail_mass: Probability of each table's two tails together; :meth:`update` gives it to the escape bin.
    """

    def __init__(self, scale_table: torch.Tensor | None = None, tail_mass: float = 1e-9):
        super().__init__()
        table = default_scale_table() if scale_table is None else scale_table.double()
        self.register_buffer("scale_table", table.float())
        self.tail_mass = tail_mass
        self._init_tables()

    @staticmethod
    def likelihood(y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        values = torch.abs(y - means)
        scales = lower_bound(scales, SCALE_MIN)
        upper = _std_normal_cdf((0.5 - values) / scales)
        lower = _std_normal_cdf((-0.5 - values) / scales)
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor, training: bool | None = None):
        """Return ``(y_hat, likelihoods)``. Training: rate on noisy latents, decoder input rounded with
        a straight-through gradient around the mean (the decoder's exact view at test time)."""
        training = self.training if training is None else training
        y_hat = ste_round(y - means) + means
        y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5) if training else y_hat
        return y_hat, self.likelihood(y_rate, scales, means)

    @torch.no_grad()
    def update(self) -> None:
        """Build one table per scale-table entry over ``[-R, R]`` with ``R`` covering all but the tail."""
        multiplier = -_inverse_normal_cdf(self.tail_mass / 2)
        rows, offsets, lengths = [], [], []
        for scale in self.scale_table.double():
            radius = int(math.ceil(float(scale) * multiplier))
            support = torch.arange(-radius, radius + 1, dtype=torch.float64)
            pmf = _std_normal_cdf((support + 0.5) / scale) - _std_normal_cdf((support - 0.5) / scale)
            escape = (1 - pmf.sum()).clamp_min(self.tail_mass)
            rows.append(torch.cat([pmf, escape.reshape(1)]))
            offsets.append(-radius)
            lengths.append(2 * radius + 1)
        self.set_tables(pad_rows(rows), torch.tensor(offsets), torch.tensor(lengths))

    def index_from_fixed(self, scales_fixed: torch.Tensor, frac_bits: int) -> torch.Tensor:
        """Scale-table index of every predicted scale given in fixed point (``frac_bits`` fractional bits):
        the first entry ≥ the scale, by integer comparison — the same on every machine."""
        table_fixed = torch.round(self.scale_table.double() * (1 << frac_bits))
        return torch.searchsorted(table_fixed, scales_fixed.contiguous()).clamp_(max=len(table_fixed) - 1)

    def compress(self, symbols: torch.Tensor, table_index: torch.Tensor) -> bytes:
        self._require_tables()
        return encode_with_tables(symbols.long().numpy(), table_index.long().numpy(), self.tables())

    def decompress(self, data: bytes, table_index: torch.Tensor) -> torch.Tensor:
        self._require_tables()
        return torch.from_numpy(decode_with_tables(data, table_index.long().numpy(), self.tables())).float()


def _inverse_normal_cdf(p: float) -> float:
    return math.sqrt(2) * float(torch.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)))
