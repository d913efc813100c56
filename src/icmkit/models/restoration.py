"""A receiver-side restoration filter for a standard codec's decoded images, conditioned on the codec's quality.

Seed 000's perception-consistency term (MMD between a frozen CNN's feature distributions) trains this filter
instead of a whole learned codec: the bitstream stays the standard codec's (any HEVC / JPEG decoder reads it) and
only a receiver that feeds a machine runs the filter (issue 21).

Why this shape — measured on this CPU, 2 threads, float32 (``benchmarks/restoration_speed.py``):
- The work runs at a quarter of the resolution (pixel unshuffle by 4: 48 channels per 4×4 block), as an
  image-restoration network at full resolution (DnCNN: 17 convolutions of 64 channels; ARCNN's 9×9 kernels) costs
  0.2–1 s per 768×512 photo here, 10–50× an HEVC-444 decode (≈ 20 ms). A 4×4 block grid also holds every
  artefact grid of the base codecs (JPEG's 8×8, HEVC's 4×4 / 8×8 transforms and deblocking).
- Plain residual blocks of 3×3 convolutions and ReLU (EDSR's block without normalisation): NAFNet's layer norms,
  gates and channel attention add memory-bound passes that cost more than their convolutions at these widths on a
  CPU; its blocks win at the widths of a GPU model, not here.
- ``edge_kernel`` 1 (the filters trained after v1): the head and tail are 1×1 convolutions of the folded blocks, i.e.
  an 8×8 "patchify" stem and its transpose at ``scale`` 8 — the head and tail of 3×3 kernels over 192 folded
  channels cost more than the whole body at width 32, and 8×8 blocks are JPEG's own grid. Measured at 768×512:
  scale 4 / width 64 / 4 blocks / 3×3 edges (v1) ≈ 7× an HEVC-444 decode; scale 8 / width 32 / 3 blocks / 1×1
  edges ≈ 0.9× (``benchmarks/restoration_speed.py``).
- The output is the decoded image plus a correction (a global residual), zero at initialisation: an untrained
  filter is the identity, and training starts from the base codec's own quality.
- One model covers the codec's whole quality range: the quality knob, mapped to ``[0, 1]`` over the training grid
  (clamped outside it), drives per-channel FiLM gains and shifts of every block (a small MLP).

Determinism: every operation is a float32 convolution, ReLU or pixel (un)shuffle; tiles are a pure function of
the image size; the output is rounded to 8 bits. Whether the rounding hides the (rare) float differences between
thread counts is what ``tests/test_restoration.py`` checks, not what this comment claims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icmkit.models.registry import register_architecture
from icmkit.models.tiling import Halo, run_tiled, tile_grid


class ConditionedBlock(nn.Module):
    """``x + FiLM(conv(relu(conv(x))))``: one residual block whose output is scaled and shifted per channel.

    Args:
        width: channels in and out (3×3 convolutions).
    """

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x))) * (1 + gain) + shift


@register_architecture
class RestorationNet(nn.Module):
    """A decoded RGB image in ``[0, 1]`` and its base codec's quality → the restored image.

    Args:
        base: name of the base codec the filter was trained behind (``hevc444``, ``jpeg``); a composed codec
            refuses weights trained for another base.
        quality_lo: the low end of the base codec's training quality range; qualities are mapped linearly to
            ``[0, 1]`` over the range and clamped outside it.
        quality_hi: the high end of that range.
        scale: side of the pixel blocks folded into channels (pixel unshuffle); H and W are padded to a multiple.
        width: channels of the blocks.
        blocks: residual blocks.
        embedding: hidden width of the MLP that maps the quality to the blocks' FiLM gains and shifts.
        edge_kernel: kernel side of the head and tail convolutions (3, v1's; or 1: a per-block linear map).
    """

    architecture = "restoration-cnn"
    float_twins: tuple[str, ...] = ()

    def __init__(
        self,
        base: str = "hevc444",
        quality_lo: float = 12.0,
        quality_hi: float = 50.0,
        scale: int = 4,
        width: int = 64,
        blocks: int = 4,
        embedding: int = 64,
        edge_kernel: int = 3,
    ):
        super().__init__()
        if not quality_lo < quality_hi:
            raise ValueError(f"quality range {quality_lo}…{quality_hi} is empty")
        if edge_kernel not in (1, 3):
            raise ValueError(f"edge_kernel must be 1 or 3, not {edge_kernel}")
        self.scale, self.width = scale, width
        folded = 3 * scale * scale
        self.head = nn.Conv2d(folded, width, edge_kernel, padding=edge_kernel // 2)
        self.body = nn.ModuleList(ConditionedBlock(width) for _ in range(blocks))
        self.tail = nn.Conv2d(width, folded, edge_kernel, padding=edge_kernel // 2)
        self.condition = nn.Sequential(nn.Linear(1, embedding), nn.ReLU(), nn.Linear(embedding, 2 * width * blocks))
        for last in (self.tail, self.condition[-1]):  # identity at initialisation
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @property
    def base(self) -> str:
        return self.config["base"]

    @property
    def halo(self) -> int:
        """Folded samples a tile needs around its interior: one per 3×3 convolution."""
        return 2 * (self.config["edge_kernel"] // 2) + 2 * len(self.body)

    def normalised_quality(self, quality: torch.Tensor) -> torch.Tensor:
        lo, hi = self.config["quality_lo"], self.config["quality_hi"]
        return ((quality.float() - lo) / (hi - lo)).clamp(0, 1)

    def film(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-block gains and shifts, each (B, blocks, width, 1, 1), of qualities (B,)."""
        out = self.condition(self.normalised_quality(quality).reshape(-1, 1))
        gain, shift = out.reshape(len(out), 2, len(self.body), self.width, 1, 1).unbind(1)
        return gain, shift

    def correction(self, folded: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """The quarter-resolution correction of quarter-resolution (unshuffled) input."""
        h = self.head(folded)
        for i, block in enumerate(self.body):
            h = block(h, gain[:, i], shift[:, i])
        return self.tail(h)

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Restored images (B, 3, H, W), not clipped (training); ``x``'s sides must be multiples of ``scale``."""
        gain, shift = self.film(quality)
        folded = F.pixel_unshuffle(x, self.scale)
        return x + F.pixel_shuffle(self.correction(folded, gain, shift), self.scale)

    @torch.inference_mode()
    def restore(self, image: torch.Tensor, quality: float, tile: int = 128) -> torch.Tensor:
        """One decoded 8-bit image (1, 3, H, W) ``uint8``, any size → the restored image, ``uint8``.

        Edge-replicated to whole ``scale`` blocks and run in tiles of ``tile``² quarter-resolution samples grown by
        :attr:`halo`: memory holds the 8-bit input and output and one tile's float tensors, and the tile grid
        depends on the image size alone. Each tile is rounded to 8 bits as it is written."""
        height, width = image.shape[-2:]
        pad = (0, -width % self.scale, 0, -height % self.scale)
        padded = F.pad(image.float(), pad, mode="replicate").to(torch.uint8) if any(pad) else image
        gain, shift = self.film(torch.tensor([float(quality)]))

        def restore_tile(part: torch.Tensor) -> torch.Tensor:
            x = part.float().div_(255)
            x += F.pixel_shuffle(self.correction(F.pixel_unshuffle(x, self.scale), gain, shift), self.scale)
            return x.mul_(255).round_().clamp_(0, 255).to(torch.uint8)

        out = torch.empty_like(padded)
        grid = tile_grid(
            padded.shape[-2] // self.scale, padded.shape[-1] // self.scale, tile, Halo(self.halo, self.halo)
        )
        run_tiled(restore_tile, padded, out, grid, scale_in=self.scale, scale_out=self.scale)
        return out[..., :height, :width]

    # The weights-file contract of icmkit.weights (no entropy tables, nothing to finalise).
    def coding_state_dict(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def is_float_twin(self, key: str) -> bool:
        return False

    def update(self) -> None:
        """Nothing to finalise: the filter codes nothing."""

    @property
    def finalized(self) -> bool:
        return True

    def require_finalized(self) -> None:
        """Always ready: the filter has no coding tables."""


__all__ = ["ConditionedBlock", "RestorationNet"]
