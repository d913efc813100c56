"""ImageNet classification, the task ``icm bench`` scores by default: the classifiers are loaded by
:mod:`icmkit.pretrained.classifiers` (below the backbones that split them) and re-exported here, where they were
defined before; :mod:`icmkit.tasks.evaluators` computes top-1 / top-5 with them.
"""

from icmkit.pretrained.classifiers import (  # noqa: F401 (re-exported)
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    LITE_CROP_PCT,
    LITE_SIZES,
    STANDARD_IMAGENET,
    Classifier,
    ClassifierWeightsError,
    PreprocessConfig,
    UnknownModelError,
    load_classifier,
    preprocess_images,
)

__all__ = ["Classifier", "ClassifierWeightsError", "UnknownModelError", "load_classifier"]
