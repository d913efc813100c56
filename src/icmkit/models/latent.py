"""The latent stage both learned families share (CompressAI's latent-codec idea): gain units with one quality
convention, and the coding of ``y`` and ``z`` through a hyperprior with a two-pass checkerboard context.

::

    y ─h_a─▶ z ─Q─▶ ẑ ──[factorised prior]──▶ z bits
                     └─ passes(ẑ): first pass (hyperprior alone) ─▶ tables of the anchors ─▶ y anchor bits
                                   second pass (+ decoded anchors) ─▶ tables of the others  ─▶ y other bits

- **Quality**: ``q ∈ [1, qualities]``, continuous; integer ``q`` is gain row ``q − 1``, values between rows
  interpolate them (Cui et al., CVPR 2021, eq. 8; :func:`~icmkit.models.context.interpolated_gain`). The pixel and
  the feature family count the same way (the feature codecs' header quality is the model's).
- **Coding**: :meth:`LatentCoding.code_latents` / :meth:`~LatentCoding.decode_latents` write and read the three
  streams ``[y anchors, y others, z]``; each model says how its tables come from ``ẑ`` (its ``_passes``: exact
  integer networks), the rest — rounding ``z``, the passes' order, what a model without context accepts — is here
  once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from icmkit.errors import BitstreamError
from icmkit.models.context import (
    SYMBOL_LIMIT,
    TableChoice,
    decode_one_pass,
    decode_two_pass,
    encode_one_pass,
    encode_two_pass,
    interpolated_gain,
)

# Gain rows start exp(−1.5) … exp(1.5) apart: one set of weights, a spread of rates from the first step.
INITIAL_GAIN_SPREAD = 1.5


def initial_gains(qualities: int, channels: int) -> tuple[nn.Parameter, nn.Parameter]:
    """``(gain, inverse_gain)``, each ``(qualities, channels)``: rows exp(−1.5) … exp(1.5) and their inverses."""
    if qualities > 1:
        spread = torch.exp(torch.linspace(-INITIAL_GAIN_SPREAD, INITIAL_GAIN_SPREAD, qualities))
    else:
        spread = torch.ones(1)
    rows = spread.reshape(-1, 1).repeat(1, channels)
    return nn.Parameter(rows), nn.Parameter(1 / rows)


def regridded_gains(rows: torch.Tensor, source_lmbdas: list[float], target_lmbdas: list[float]) -> torch.Tensor:
    """Gain rows for ``target_lmbdas`` from ``rows`` trained at ``source_lmbdas`` (ascending): each channel's log
    gain is piecewise linear in log λ through the trained rows, the end segments' slopes beyond them — the start of
    a fine-tune that moves or extends a family's rate grid (Cui et al.'s interpolation, in λ instead of quality)."""
    if len(source_lmbdas) != len(rows):
        raise ValueError(f"{len(rows)} gain rows for {len(source_lmbdas)} λ")
    if len(rows) < 2 or min(source_lmbdas) <= 0 or any(b <= a for a, b in zip(source_lmbdas, source_lmbdas[1:])):
        raise ValueError(f"source λ must be positive, rise and be at least two: {source_lmbdas}")
    source = torch.tensor(source_lmbdas, dtype=torch.float64).log()
    logs = rows.detach().to(torch.float64).abs().clamp_min(1e-6).log()  # rows count by magnitude, as in coding
    out = []
    for lmbda in target_lmbdas:
        t = math.log(lmbda)
        i = int(torch.searchsorted(source, torch.tensor(t, dtype=torch.float64)).clamp(1, len(source) - 1)) - 1
        weight = (t - float(source[i])) / float(source[i + 1] - source[i])
        out.append(((1 - weight) * logs[i] + weight * logs[i + 1]).exp())
    return torch.stack(out).to(rows.dtype)


class LatentCoding:
    """Gains and latent coding for a model with ``gain`` / ``inverse_gain`` rows, ``h_a``, an
    ``entropy_bottleneck``, a ``gaussian_conditional`` and a ``_passes(ẑ)`` that gives the first pass's tables and
    the second pass (a function of the decoded anchors in fixed point; ``None`` without context)."""

    gain: nn.Parameter
    inverse_gain: nn.Parameter
    _passes: Callable[[torch.Tensor], tuple[TableChoice, Callable[[torch.Tensor], TableChoice] | None]]

    def gains(self, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gain, inverse_gain)`` at a continuous quality in ``[1, qualities]``, shaped ``(1, M, 1, 1)``."""
        try:
            gain = interpolated_gain(self.gain, float(quality))
            inverse = interpolated_gain(self.inverse_gain, float(quality))
        except ValueError:
            raise ValueError(f"quality {quality} outside 1…{len(self.gain)}") from None
        return gain.reshape(1, -1, 1, 1), inverse.reshape(1, -1, 1, 1)

    def code_latents(self, y: torch.Tensor) -> dict:
        """Scaled latents ``y`` ``(N, M, h, w)`` → ``{"strings": [y anchors, y others, z], "shape": z's (h, w)}``;
        ``y others`` are empty strings for a model without context."""
        z_hat = torch.round(self.h_a(y)).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        first, second = self._passes(z_hat)
        z_strings = [self.entropy_bottleneck.compress(z_hat[i]) for i in range(len(y))]
        if second is not None:
            anchor_strings, other_strings = encode_two_pass(y, first, second, self.gaussian_conditional)
        else:
            anchor_strings = encode_one_pass(y, first, self.gaussian_conditional)
            other_strings = [b""] * len(y)
        return {"strings": [anchor_strings, other_strings, z_strings], "shape": tuple(z_hat.shape[-2:])}

    def decode_latents(self, strings: list[list[bytes]], shape: tuple[int, int]) -> torch.Tensor:
        """The streams of :meth:`code_latents` and ``z``'s (h, w) → ``ŷ`` (still scaled by the gain)."""
        anchor_strings, other_strings, z_strings = strings
        z_hat = torch.stack([self.entropy_bottleneck.decompress(s, shape) for s in z_strings])
        first, second = self._passes(z_hat)
        if second is not None:
            return decode_two_pass(anchor_strings, other_strings, first, second, self.gaussian_conditional)
        if any(other_strings):  # code_latents writes them empty: anything else is not its stream
            raise BitstreamError("malformed stream (data in the second pass of a model without context)")
        return decode_one_pass(anchor_strings, first, self.gaussian_conditional)
