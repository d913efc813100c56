"""Training losses as small modules returning dicts of named parts; :class:`CodecObjective` composes them."""

from icmkit.losses.distortion import Distortion
from icmkit.losses.mmd import mmd2_unbiased
from icmkit.losses.objective import CodecObjective
from icmkit.losses.perception import DEFAULT_LAYERS, FeatureTap, PerceptionConsistencyLoss
from icmkit.losses.rate import RateLoss, bits_per_pixel

__all__ = [
    "DEFAULT_LAYERS",
    "CodecObjective",
    "Distortion",
    "FeatureTap",
    "PerceptionConsistencyLoss",
    "RateLoss",
    "bits_per_pixel",
    "mmd2_unbiased",
]
