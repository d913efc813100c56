"""Where a feature map's samples sit in the image: the sender's resize for detectors, recorded in streams.

A classification stream codes the image as it is (padded to the codec's multiple); a detection stream codes
the image after the detector's own transform — resized so that the shorter side is ``min_size`` (the longer
at most ``max_size``), then padded to a multiple of :data:`SIZE_DIVISIBLE` as torchvision batches it. The
receiver needs the original size (boxes and masks come back in its coordinates) and the resized one (the
detector clips boxes to it); the padded size follows from the latter. No torch here: the stream and
feature-file readers use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIZE_DIVISIBLE = 32  # torchvision's GeneralizedRCNNTransform pads every batch to this multiple
_SIZE = re.compile(r"^([1-9][0-9]{0,5})x([1-9][0-9]{0,5})$")


@dataclass(frozen=True)
class DetectionGeometry:
    """An image's original ``(H, W)`` and its ``(h, w)`` after the detector's resize."""

    original: tuple[int, int]
    resized: tuple[int, int]

    @property
    def padded(self) -> tuple[int, int]:
        """``(h, w)`` of the head's input: the resized image padded to :data:`SIZE_DIVISIBLE`."""
        return tuple(-(-side // SIZE_DIVISIBLE) * SIZE_DIVISIBLE for side in self.resized)

    def feature_size(self, stride: int) -> tuple[int, int]:
        """``(h, w)`` of the head's map of the padded input at ``stride`` (a divisor of 32)."""
        return tuple(side // stride for side in self.padded)


def format_size(size: tuple[int, int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def parse_size(text: str) -> tuple[int, int] | None:
    """``"HxW"`` → ``(H, W)``; None when it is not two positive integers of at most six digits."""
    match = _SIZE.match(text)
    return (int(match[1]), int(match[2])) if match else None
