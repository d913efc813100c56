"""icmkit — image coding for machines: codecs, training and benchmarks on rate vs machine accuracy."""

from icmkit.api import DEFAULT_CODEC, bits_per_pixel, compress, decompress, psnr, read_image
from icmkit.codecs import get_codec, list_codecs, register_codec
from icmkit.errors import IcmError

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CODEC",
    "IcmError",
    "__version__",
    "bits_per_pixel",
    "compress",
    "decompress",
    "get_codec",
    "list_codecs",
    "psnr",
    "read_image",
    "register_codec",
]
