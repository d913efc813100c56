"""Two-pass checkerboard context (He et al., "Checkerboard context model for efficient learned image
compression", CVPR 2021) and gain units (Cui et al., "Asymmetric gained deep image compression with
continuous rate adaptation", CVPR 2021), shared by the pixel and the feature codecs.

Checkerboard: *anchors* (``(i + j)`` even) are coded with entropy parameters from the hyperprior alone;
the other half with parameters that also see the decoded anchors — two passes, not one per sample as in
an autoregressive context, so decoding stays parallel. The parameter functions the coder calls work in
fixed point (:class:`~icmkit.layers.integer.ExactIntegerNet`), so encoder and decoder pick the same
tables bit for bit.

Gain units: ``y`` is scaled channel-wise by a learned gain vector before quantisation and by its inverse
gain before synthesis; one vector per trained rate point, and between two neighbours the exponential
interpolation ``g = g_l^(1 − t) · g_(l+1)^t`` gives a continuous rate knob. The gains act on the encoder
side and on the synthesis only — never on the probability tables, which depend on ``ẑ`` and the decoded
anchors alone — so a fractional quality cannot make decoding machine-dependent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from icmkit.entropy.coder import MAX_ESCAPE_VALUE
from icmkit.entropy.gaussian import GaussianConditional
from icmkit.entropy.quantize import ste_round
from icmkit.layers.integer import ACT_FRAC_BITS, ExactIntegerNet

SYMBOL_LIMIT = MAX_ESCAPE_VALUE // 2
# (table index, means in fixed point) for every element of y
TableChoice = tuple[torch.Tensor, torch.Tensor]


def checkerboard(height: int, width: int) -> torch.Tensor:
    """``(1, 1, H, W)`` bool mask of anchor positions (``(i + j)`` even), decoded in the first pass."""
    i = torch.arange(height).reshape(-1, 1)
    j = torch.arange(width).reshape(1, -1)
    return ((i + j) % 2 == 0).reshape(1, 1, height, width)


def training_parameters(
    y: torch.Tensor, first: torch.Tensor, second: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Float entropy parameters ``(scales, means)`` for training: ``first`` (no context) at anchors,
    ``second(anchors as the decoder sees them)`` elsewhere."""
    anchors = checkerboard(*y.shape[-2:]).to(y.device)
    _, means_a = first.chunk(2, 1)
    y_anchor = (ste_round(y - means_a) + means_a) * anchors
    return torch.where(anchors, first, second(y_anchor))


def table_choice(params_fixed: torch.Tensor, channels: int, conditional: GaussianConditional) -> TableChoice:
    """Fixed-point ``(scales, means)`` → (scale-table index, means in fixed point); exact on any machine."""
    scales_fixed, means_fixed = params_fixed[:, :channels], params_fixed[:, channels:]
    return conditional.index_from_fixed(scales_fixed, ACT_FRAC_BITS), means_fixed


def _symbols(y: torch.Tensor, means_fixed: torch.Tensor) -> torch.Tensor:
    return torch.round(y - ExactIntegerNet.from_fixed(means_fixed)).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)


def encode_one_pass(y: torch.Tensor, first: TableChoice, conditional: GaussianConditional) -> list[bytes]:
    """Code ``y`` with the hyperprior's tables alone (models without context): one string per image."""
    index, means_fixed = first
    symbols = _symbols(y, means_fixed)
    return [conditional.compress(symbols[i], index[i]) for i in range(len(y))]


def decode_one_pass(strings: list[bytes], first: TableChoice, conditional: GaussianConditional) -> torch.Tensor:
    """The inverse of :func:`encode_one_pass`: ``ŷ`` (float32)."""
    index, means_fixed = first
    symbols = torch.stack([conditional.decompress(data, index[i]) for i, data in enumerate(strings)])
    return symbols + ExactIntegerNet.from_fixed(means_fixed).float()


def encode_two_pass(
    y: torch.Tensor,
    first: TableChoice,
    second: Callable[[torch.Tensor], TableChoice],
    conditional: GaussianConditional,
) -> tuple[list[bytes], list[bytes]]:
    """Code ``y`` (one string per image for the anchors, one for the rest). ``second`` maps the decoded
    anchors in fixed point (zero elsewhere) to the second pass's table choice."""
    index, means_fixed = first
    symbols = _symbols(y, means_fixed)
    anchors = checkerboard(*y.shape[-2:]).expand_as(y)
    index_n, means_n = second((ExactIntegerNet.to_fixed(symbols) + means_fixed) * anchors)
    symbols_n = _symbols(y, means_n)
    others = ~anchors
    anchor_strings = [conditional.compress(symbols[i][anchors[i]], index[i][anchors[i]]) for i in range(len(y))]
    other_strings = [conditional.compress(symbols_n[i][others[i]], index_n[i][others[i]]) for i in range(len(y))]
    return anchor_strings, other_strings


def decode_two_pass(
    anchor_strings: list[bytes],
    other_strings: list[bytes],
    first: TableChoice,
    second: Callable[[torch.Tensor], TableChoice],
    conditional: GaussianConditional,
) -> torch.Tensor:
    """The inverse of :func:`encode_two_pass`: ``ŷ`` (float32)."""
    index, means_fixed = first
    shape = index.shape
    anchors = checkerboard(*shape[-2:]).expand(shape)
    symbols = torch.zeros(shape)
    for i, data in enumerate(anchor_strings):
        symbols[i][anchors[i]] = conditional.decompress(data, index[i][anchors[i]])
    index_n, means_n = second((ExactIntegerNet.to_fixed(symbols) + means_fixed) * anchors)
    others = ~anchors
    for i, data in enumerate(other_strings):
        symbols[i][others[i]] = conditional.decompress(data, index_n[i][others[i]])
    means_fixed = torch.where(anchors, means_fixed, means_n)
    return symbols + ExactIntegerNet.from_fixed(means_fixed).float()


def interpolated_gain(gains: torch.Tensor, quality: float) -> torch.Tensor:
    """Gain vector at a continuous ``quality`` in ``[1, len(gains)]`` (1-based: quality k is row k − 1),
    exponential interpolation between the two neighbouring rows (Cui et al., eq. 8). Rows are used by
    absolute value, so a gain can never flip a channel's sign. Computed in float64 from the stored values,
    then rounded to float32: the same vector on every machine."""
    count = len(gains)
    if not (math.isfinite(quality) and 1 <= quality <= count):
        raise ValueError(f"quality {quality} outside 1…{count}")
    position = quality - 1
    low = min(int(math.floor(position)), max(count - 2, 0))
    t = position - low
    magnitudes = gains.abs().clamp_min(1e-6)
    if t == 0 or count == 1:
        return magnitudes[low]
    low_row, high_row = magnitudes[low].double(), magnitudes[low + 1].double()
    return (low_row ** (1 - t) * high_row**t).to(gains.dtype)
