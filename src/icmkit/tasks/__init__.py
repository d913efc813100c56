"""Task models that score decoded images (machine vision side of image coding for machines)."""

from icmkit.tasks.classification import (
    Classifier,
    ClassifierWeightsError,
    PreprocessConfig,
    UnknownModelError,
    load_classifier,
)

__all__ = ["Classifier", "ClassifierWeightsError", "PreprocessConfig", "UnknownModelError", "load_classifier"]
