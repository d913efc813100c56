"""The Python API, mirroring the CLI: ``compress(image) -> bytes``, ``decompress(bytes) -> image`` (or
:class:`FeatureMaps` for feature codecs), ``predict(anything) -> Prediction`` (ImageNet top-k) and
``detect(anything) -> Detections`` (a COCO detector's boxes, from pixels or from a feature stream).

A façade: each function lives in the package that does the work (images in :mod:`icmkit.image`, fidelity in
:mod:`icmkit.fidelity`, stream routing in :mod:`icmkit.codecs.streams`, predictions and the model caches in
:mod:`icmkit.tasks.predict`); the library's own modules import them from there, never from here.
"""

from __future__ import annotations

import numpy as np

from icmkit.codecs.base import Codec
from icmkit.codecs.registry import get_codec, list_codecs, stream_codec  # noqa: F401 (re-exported)
from icmkit.codecs.sniff import sniff_codec  # noqa: F401 (re-exported)
from icmkit.codecs.streams import (  # noqa: F401 (re-exported)
    codec_for_stream,
    read_stream_file,
    restoration_filters,
    restoring_codec,
)
from icmkit.decoded import FeatureMaps
from icmkit.defaults import DEFAULT_CLASSIFIER, DEFAULT_CODEC  # noqa: F401 (re-exported)
from icmkit.errors import resource_errors
from icmkit.fidelity import bits_per_pixel, psnr  # noqa: F401 (re-exported)
from icmkit.image import ImageLike, read_image  # noqa: F401 (re-exported)
from icmkit.tasks.predict import (  # noqa: F401 (re-exported)
    ClassifierWeights,
    Detections,
    Prediction,
    TopClass,
    cached_classifier,
    cached_detector,
    cached_split_backbone,
    clear_model_cache,
    detect,
    predict,
)


def compress(image: ImageLike, codec: str | Codec = DEFAULT_CODEC, quality: float | None = None) -> bytes:
    """Compress an image with a registered codec (by name) at ``quality`` (the codec's default if None)."""
    codec = get_codec(codec) if isinstance(codec, str) else codec
    codec.require_available()
    with resource_errors("compress"):
        return codec.encode(read_image(image), quality)


def decompress(data: bytes, codec: str | Codec | None = None) -> np.ndarray | FeatureMaps:
    """Decode a stream; the codec is read from the ``.icm`` header or the format's signature.

    Pixel codecs (every conventional codec, ``icm-mse``, ``icm-mmd``) return the decoded image, an
    ``H×W×3`` uint8 array. Feature codecs (``kind == "feature"``, e.g. ``icm-dicm-lite0``) return
    :class:`FeatureMaps`: ``tensors["features"]`` is a ``(1, C, h, w)`` float32 torch tensor of the
    backbone head's features (``h = ceil(H / stride)``), ``strides["features"]`` its stride,
    ``image_size`` the coded image's ``(H, W)``, and ``meta`` the codec, quality, backbone, split,
    head digest, coded feature shape and stride — feed it to :func:`predict`, or write it with
    :func:`icmkit.feature_io.save_features`.
    """
    with resource_errors("decompress"):
        return codec_for_stream(data, codec).decode(bytes(data))
