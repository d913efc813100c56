"""What a decoder returns, named below every package that produces or consumes it: :class:`CodecKind` (pixels or
features), :class:`FeatureMaps` (a feature codec's decoded output) and :data:`FEATURES`, the name of its tensor.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icmkit.geometry import ClassifierGeometry, DetectionGeometry

    Geometry = ClassifierGeometry | DetectionGeometry


class CodecKind(str, enum.Enum):
    """What a codec decodes to: pixels (an image) or features (:class:`FeatureMaps`); the ``.icm`` header's kind."""

    PIXEL = "pixel"
    FEATURE = "feature"


FEATURES = "features"  # the name of the tensor a feature codec decodes to


@dataclass
class FeatureMaps:
    """Decoded output of a feature codec: named tensors with their stride relative to the input."""

    tensors: Mapping[str, Any]
    strides: Mapping[str, int]
    image_size: tuple[int, int]  # (height, width) of the coded image, for rate and task heads
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_split(cls, features, image_size, stride: int, meta: dict, geometry: Geometry | None = None):
        """One split's map (``FEATURES``) cropped to what the receivers take: the image's own map in the full
        geometry (``⌈side / stride⌉``), the map of the classifier's cropped input in the classifier geometry
        (whose input size joins ``meta`` as ``input_size``), the map of the 32-padded resized input in the
        detection geometry (whose resized size joins ``meta``, for boxes back in original coordinates)."""
        from icmkit.geometry import ClassifierGeometry

        if geometry is None:
            height, width = (math.ceil(side / stride) for side in image_size)
        elif isinstance(geometry, ClassifierGeometry):
            height, width = geometry.feature_size(stride)
            meta = {**meta, "input_size": geometry.input}
        else:
            height, width = geometry.feature_size(stride)
            meta = {**meta, "resized": geometry.resized}
        return cls(
            tensors={FEATURES: features[:, :, :height, :width].contiguous()},
            strides={FEATURES: stride},
            image_size=tuple(image_size),
            meta=meta,
        )
