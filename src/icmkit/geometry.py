"""Where a feature map's samples sit in the image: the sender's transform, recorded in streams.

Three geometries. A *classifier* stream (the default) codes the image after the classifier's own evaluation
transform — resize, centre crop (:class:`ClassifierGeometry`) — so the tail sees what the classifier sees on the
image path. A *full* stream codes the image as it is (padded to the codec's multiple; the tail then runs on the
whole photo's map, which classifiers trained on centre crops read poorly). A *detection* stream codes the image
after the detector's own transform — resized so that the shorter side is ``min_size`` (the longer
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
class ClassifierGeometry:
    """An image's original ``(H, W)`` and ``input``, the ``(h, w)`` the classifier's transform crops it to."""

    original: tuple[int, int]
    input: tuple[int, int]

    def feature_size(self, stride: int) -> tuple[int, int]:
        """``(h, w)`` of the head's map of the cropped input at ``stride`` ("same" padding: rounded up)."""
        return tuple(-(-side // stride) for side in self.input)


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
