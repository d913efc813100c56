"""Learned codec architectures, built by name so that weight files can say which one they hold."""

from __future__ import annotations

from icmkit.models.base import CompressionModel, NotFinalizedError
from icmkit.models.dicm import DICMFeatureModel
from icmkit.models.hyperprior import MeanScaleHyperprior
from icmkit.models.registry import ARCHITECTURES, build_model, register_architecture  # noqa: F401 (filled above)
from icmkit.models.restoration import RestorationNet
from icmkit.models.variable_rate import VariableRateHyperprior

__all__ = [
    "ARCHITECTURES",
    "CompressionModel",
    "DICMFeatureModel",
    "MeanScaleHyperprior",
    "NotFinalizedError",
    "RestorationNet",
    "VariableRateHyperprior",
    "build_model",
]

from icmkit.deprecation import renamed  # noqa: E402

__getattr__ = renamed(__name__, {"DICMFeatureCodec": "icmkit.models.dicm:DICMFeatureModel"})
