"""Learned codec architectures, built by name so that weight files can say which one they hold."""

from __future__ import annotations

from icmkit.models.base import CompressionModel, NotFinalizedError
from icmkit.models.dicm import DICMFeatureCodec
from icmkit.models.hyperprior import MeanScaleHyperprior
from icmkit.models.registry import ARCHITECTURES, build_model, register_architecture  # noqa: F401 (filled above)
from icmkit.models.restoration import RestorationNet
from icmkit.models.variable_rate import VariableRateHyperprior

__all__ = [
    "ARCHITECTURES",
    "CompressionModel",
    "DICMFeatureCodec",
    "MeanScaleHyperprior",
    "NotFinalizedError",
    "RestorationNet",
    "VariableRateHyperprior",
    "build_model",
]
