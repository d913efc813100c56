"""Run a convolutional transform tile by tile: bounded memory on large images, parallel decoding.

A tile is a rectangle of latent samples (its *interior*) grown by a *halo* of neighbouring latent samples
and clipped to the frame. The transform runs on the grown rectangle; only the interior's output is
kept. When the halo covers the transform's receptive field, every kept value reads exactly the inputs
the full-frame transform reads, so tiled and full-frame outputs agree up to float rounding (the
summation order of a convolution may depend on the size of its input) and no seam can form.

Tile geometry is a pure function of the latent size and the tile size: never of the thread count or
the machine, so that decoded pixels do not depend on them either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from icmkit.layers.gdn import GDN

# Layers that read one spatial position only: they leave the receptive field unchanged.
_POINTWISE = (GDN, nn.ReLU, nn.LeakyReLU, nn.Identity)
# The receptive field is translation-invariant on the stride grid, so it is measured around any latent
# sample far enough from the frame's origin that no index goes negative.
_PROBE = 1000


@dataclass(frozen=True)
class Halo:
    """Latent samples a tile needs beyond its interior, before (above / left) and after (below / right)."""

    before: int
    after: int


@dataclass(frozen=True)
class Span:
    """One axis of a tile, in latent samples: interior ``[start, stop)`` within grown ``[grown_start, grown_stop)``."""

    start: int
    stop: int
    grown_start: int
    grown_stop: int

    def grown(self, scale: int) -> slice:
        return slice(self.grown_start * scale, self.grown_stop * scale)

    def interior(self, scale: int) -> slice:
        return slice(self.start * scale, self.stop * scale)

    def interior_within_grown(self, scale: int) -> slice:
        return slice((self.start - self.grown_start) * scale, (self.stop - self.grown_start) * scale)


Tile = tuple[Span, Span]  # rows, columns


def split_axis(length: int, tile: int, halo: Halo) -> list[Span]:
    """``ceil(length / tile)`` near-equal interiors covering ``[0, length)``, each grown by ``halo``."""
    count = -(-length // tile)
    bounds = [i * length // count for i in range(count + 1)]
    return [
        Span(start, stop, max(0, start - halo.before), min(length, stop + halo.after))
        for start, stop in zip(bounds, bounds[1:])
    ]


def tile_grid(height: int, width: int, tile: int, halo: Halo) -> list[Tile]:
    """Tiles of at most ``tile``×``tile`` latent samples covering a ``height``×``width`` latent, row-major."""
    return [(rows, cols) for rows in split_axis(height, tile, halo) for cols in split_axis(width, tile, halo)]


def _square(value: int | tuple[int, ...]) -> int:
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ValueError(f"tiling needs square kernels, strides and paddings, got {value}")
    return values[0]


def _input_interval(layer: nn.Module, lo: int, hi: int) -> tuple[int, int]:
    """Input positions (inclusive) that outputs ``lo..hi`` of ``layer`` read, along one axis."""
    if isinstance(layer, _POINTWISE):
        return lo, hi
    if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) or _square(layer.dilation) != 1:
        raise TypeError(f"cannot bound the receptive field of {layer!r}")
    kernel, stride, padding = _square(layer.kernel_size), _square(layer.stride), _square(layer.padding)
    if isinstance(layer, nn.ConvTranspose2d):
        # output o = stride·i − padding + t for t in [0, kernel): solve for the inputs i
        return -(-(lo + padding - kernel + 1) // stride), (hi + padding) // stride
    return stride * lo - padding, stride * hi - padding + kernel - 1


def receptive_interval(layers: Iterable[nn.Module], lo: int, hi: int) -> tuple[int, int]:
    """Input positions (inclusive) that outputs ``lo..hi`` of a sequence of layers read, along one axis."""
    for layer in reversed(list(layers)):
        lo, hi = _input_interval(layer, lo, hi)
    return lo, hi


def resampling_factor(layers: Iterable[nn.Module]) -> int:
    """Product of the strides: pixels per latent sample along one axis."""
    return math.prod(_square(layer.stride) for layer in layers if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)))


def synthesis_halo(g_s: nn.Sequential) -> Halo:
    """The latent samples around one latent sample that its block of output pixels reads (g_s's field).

    Walked back layer by layer from one scale×scale pixel block. For four 5×5 stride-2 deconvolutions
    (each output reads its input ±1 sample) it is 1 sample before and 2 after: with that halo a tile's
    interior reads exactly the latents the full frame does, so only float rounding can differ.
    """
    scale = resampling_factor(g_s)
    lo, hi = receptive_interval(g_s, _PROBE * scale, _PROBE * scale + scale - 1)
    return Halo(before=_PROBE - lo, after=hi - _PROBE)


def analysis_halo(g_a: nn.Sequential) -> Halo:
    """The pixels one latent sample reads beyond its own block (g_a's field), in whole latent samples.

    Rounded up to whole samples because a tile's pixels must start on the stride grid: only then do the
    strided convolutions sample the same positions as on the full frame.
    """
    scale = resampling_factor(g_a)
    lo, hi = receptive_interval(g_a, _PROBE, _PROBE)
    block_lo, block_hi = _PROBE * scale, _PROBE * scale + scale - 1
    return Halo(before=-(-(block_lo - lo) // scale), after=-(-(hi - block_hi) // scale))


def run_tiled(
    transform: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    out: torch.Tensor,
    tiles: list[Tile],
    scale_in: int = 1,
    scale_out: int = 1,
    workers: int = 1,
) -> torch.Tensor:
    """Fill ``out`` with ``transform`` applied to ``x`` (both N×C×H×W) one image and one tile at a time.

    ``scale_in`` / ``scale_out`` are the pixels per latent sample of ``x`` and ``out``. One image at a
    time so that batching never changes a tile's arithmetic. With ``workers`` > 1 tiles run on a thread
    pool (torch releases the GIL inside its kernels); each writes its own disjoint region of ``out``, so
    the result does not depend on which thread runs a tile or on the order tiles finish in.
    """

    def run(job: tuple[int, Tile]) -> None:
        image, (rows, cols) = job
        result = transform(x[image : image + 1, :, rows.grown(scale_in), cols.grown(scale_in)])
        out[image : image + 1, :, rows.interior(scale_out), cols.interior(scale_out)] = result[
            ..., rows.interior_within_grown(scale_out), cols.interior_within_grown(scale_out)
        ]

    jobs = [(image, tile) for image in range(len(x)) for tile in tiles]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            run(job)
    else:
        with ThreadPoolExecutor(min(workers, len(jobs)), thread_name_prefix="icm-tile") as pool:
            list(pool.map(run, jobs))  # list() re-raises the first error of any tile
    return out
