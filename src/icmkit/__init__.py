"""icmkit — image coding for machines: codecs, training and benchmarks on rate vs machine accuracy."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names → the module defining them, imported on first use (PEP 562), so that `import icmkit` — and
# with it the `icm` command's argument parsing and --help — loads no numpy, Pillow or torch.
_EXPORTS = {
    "DEFAULT_CLASSIFIER": "icmkit.defaults",
    "DEFAULT_CODEC": "icmkit.defaults",
    "Detections": "icmkit.api",
    "FeatureMaps": "icmkit.codecs",
    "IcmError": "icmkit.errors",
    "Prediction": "icmkit.api",
    "TopClass": "icmkit.api",
    "bits_per_pixel": "icmkit.api",
    "compress": "icmkit.api",
    "decompress": "icmkit.api",
    "detect": "icmkit.api",
    "get_codec": "icmkit.codecs",
    "list_codecs": "icmkit.codecs",
    "load_features": "icmkit.feature_io",
    "predict": "icmkit.api",
    "psnr": "icmkit.api",
    "read_image": "icmkit.api",
    "register_codec": "icmkit.codecs",
    "save_features": "icmkit.feature_io",
    "unregister_codec": "icmkit.codecs",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'icmkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
