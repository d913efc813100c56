"""Codecs: the protocol, the registry, conventional anchors and learned codecs."""

from icmkit.codecs.base import Availability, Codec, CodecKind, FeatureMaps, QualitySpec
from icmkit.codecs.registry import get_codec, list_codecs, register_codec, unregister_codec
from icmkit.image import check_rgb

__all__ = [
    "Availability",
    "Codec",
    "CodecKind",
    "FeatureMaps",
    "QualitySpec",
    "check_rgb",
    "get_codec",
    "list_codecs",
    "register_codec",
    "unregister_codec",
]
