"""icmkit — image coding for machines: codecs, training and benchmarks on rate vs machine accuracy."""

from icmkit.api import (
    DEFAULT_CLASSIFIER,
    DEFAULT_CODEC,
    Prediction,
    TopClass,
    bits_per_pixel,
    compress,
    decompress,
    predict,
    psnr,
    read_image,
)
from icmkit.codecs import FeatureMaps, get_codec, list_codecs, register_codec, unregister_codec
from icmkit.feature_io import load_features, save_features
from icmkit.errors import IcmError

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CLASSIFIER",
    "DEFAULT_CODEC",
    "FeatureMaps",
    "IcmError",
    "Prediction",
    "TopClass",
    "__version__",
    "bits_per_pixel",
    "compress",
    "decompress",
    "get_codec",
    "list_codecs",
    "load_features",
    "predict",
    "psnr",
    "read_image",
    "register_codec",
    "save_features",
    "unregister_codec",
]
