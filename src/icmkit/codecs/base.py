"""The one contract every codec obeys: conventional anchors, learned pixel codecs, feature codecs.

A codec turns an RGB image (``H×W×3`` ``uint8`` numpy array) into bytes and back. Pixel codecs decode
to an image of the same shape; feature codecs (kind ``"feature"``) decode to backbone features
(:class:`FeatureMaps`) that a task model's tail consumes. Rate is always measured on the bytes that
``encode`` returns, over the pixels of the input image.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from icmkit.decoded import FEATURES, CodecKind, FeatureMaps  # noqa: F401 (re-exported: their home before)
from icmkit.errors import CodecUnavailableError, QualityError

if TYPE_CHECKING:
    from icmkit.geometry import ClassifierGeometry, DetectionGeometry

    Geometry = ClassifierGeometry | DetectionGeometry

Quality = int | float  # an integer knob, or a point of a continuous one (see QualitySpec.resolution)


def parse_quality(value: str | float) -> Quality:
    """A quality read back from text (CSV, JSON): ``int`` when integral, as :meth:`QualitySpec.validate` returns."""
    number = float(value)
    return int(number) if number.is_integer() else number


@dataclass(frozen=True)
class QualitySpec:
    """A codec's quality knob.

    ``grid`` is the field's default evaluation grid, ordered from the lowest to the highest rate;
    ``lo``/``hi`` bound the accepted values (inclusive). ``rate_increases`` is False for knobs where a
    larger value means fewer bits (a quantiser parameter, a compression ratio).

    ``resolution`` > 0 makes the knob continuous (variable-rate learned codecs): any value in ``[lo, hi]``
    is accepted and rounded to the nearest multiple of ``resolution`` above ``lo`` — the granularity the
    ``.icm`` header stores (:meth:`to_id` / :meth:`from_id`). Validated values are ``int`` when integral,
    so grid points print and compare as before.
    """

    knob: str
    grid: tuple[Quality, ...]
    lo: Quality
    hi: Quality
    default: Quality
    rate_increases: bool = True
    doc: str = ""
    allowed: tuple[int, ...] | None = None  # a sparse set (learned codecs' shipped weights)
    resolution: float = 0.0

    @property
    def continuous(self) -> bool:
        return self.resolution > 0

    def validate(self, quality: Quality | str | None) -> Quality:
        if quality is None:
            return self.default
        value = self._continuous(quality) if self.continuous else self._integer(quality)
        if self.allowed is not None and value not in self.allowed:
            shown = ", ".join(map(str, self.allowed))
            raise QualityError(f"quality {value} is not available; choose one of {shown}")
        if not self.lo <= value <= self.hi:
            raise QualityError(f"quality {value} is outside {self.lo}…{self.hi}")
        return value

    @staticmethod
    def _integer(quality) -> int:
        try:
            value = float(quality) if isinstance(quality, (str, float)) else quality
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise QualityError(f"quality must be an integer, got {quality!r}") from None

    def _continuous(self, quality) -> Quality:
        try:
            value = float(quality)
        except (TypeError, ValueError):
            raise QualityError(f"quality must be a number, got {quality!r}") from None
        if not math.isfinite(value) or not self.lo <= value <= self.hi:
            raise QualityError(f"quality {quality} is outside {self.lo}…{self.hi}")
        snapped = round(self.lo + round((value - self.lo) / self.resolution) * self.resolution, 6)
        return int(snapped) if snapped.is_integer() else snapped

    def to_id(self, quality: Quality) -> int:
        """The header's quality byte (1…255) for a validated quality."""
        if not self.continuous:
            return int(quality)
        return round((quality - self.lo) / self.resolution) + 1

    def from_id(self, quality_id: int) -> Quality:
        """The quality a header's quality byte stands for (not validated)."""
        if not self.continuous:
            return quality_id
        value = round(self.lo + (quality_id - 1) * self.resolution, 6)
        return int(value) if value.is_integer() else value

    def describe(self) -> str:
        if self.allowed is not None:
            return f"{self.knob} ∈ {{{', '.join(map(str, self.allowed))}}}"
        if self.continuous:
            return f"{self.knob} {self.lo}…{self.hi} (continuous, step {self.resolution:g})"
        return f"{self.knob} {self.lo}…{self.hi}"


@dataclass(frozen=True)
class Availability:
    """Whether a codec can run here and, when it cannot, why (e.g. a missing encoder or package)."""

    ok: bool
    reason: str = ""


class Codec(ABC):
    """Base class of every codec. Subclasses set the class attributes and implement the two methods.

    Construction must be cheap (no weight loading, no subprocess): the registry builds every codec to
    list them. Heavy state is loaded on first use.
    """

    name: str
    kind: CodecKind = CodecKind.PIXEL
    description: str = ""
    extension: str = ".bin"
    quality: QualitySpec

    def availability(self) -> Availability:
        return Availability(True)

    def require_available(self) -> None:
        state = self.availability()
        if not state.ok:
            raise CodecUnavailableError(f"codec {self.name!r} is not available: {state.reason}")

    def fingerprint(self, quality: Quality) -> str:
        """What makes this codec's output at ``quality`` what it is, beyond its name (e.g. a weights digest).

        Result files record it, so that a resumed benchmark never mixes outputs of different weights.
        Conventional codecs return "" (their output depends on library versions the user controls).
        """
        return ""

    @abstractmethod
    def encode(self, image: np.ndarray, quality: Quality | None = None) -> bytes:
        """Compress an ``H×W×3`` uint8 RGB image at ``quality`` (validated by :attr:`quality`)."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray | FeatureMaps:
        """Decompress bytes written by :meth:`encode`."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.kind.value})>"
