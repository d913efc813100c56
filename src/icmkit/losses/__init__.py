"""Training losses as small modules that return a dict of named parts (weights live in the config)."""

from icmkit.losses.rate_distortion import RateDistortionLoss, bits_per_pixel

__all__ = ["RateDistortionLoss", "bits_per_pixel"]
