"""Learned codec architectures, built by name so that weight files can say which one they hold."""

from __future__ import annotations

from icmkit.models.base import CompressionModel, NotFinalizedError
from icmkit.models.dicm import DICMFeatureCodec
from icmkit.models.hyperprior import MeanScaleHyperprior
from icmkit.models.variable_rate import VariableRateHyperprior

ARCHITECTURES: dict[str, type[CompressionModel]] = {
    MeanScaleHyperprior.architecture: MeanScaleHyperprior,
    VariableRateHyperprior.architecture: VariableRateHyperprior,
    DICMFeatureCodec.architecture: DICMFeatureCodec,
}


def build_model(architecture: str, **config) -> CompressionModel:
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}") from None
    return cls(**config)


__all__ = [
    "ARCHITECTURES",
    "CompressionModel",
    "DICMFeatureCodec",
    "MeanScaleHyperprior",
    "NotFinalizedError",
    "VariableRateHyperprior",
    "build_model",
]
