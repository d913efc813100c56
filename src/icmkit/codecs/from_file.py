"""A codec over a weights file a user trained (``icm train``'s ``final.safetensors``), named by its path.

``icm compress --codec runs/my-codec/final.safetensors`` (and ``icm bench --codecs PATH``) use a run's weights
without registering anything: the registry builds the codec on first use, under the path as its name, so the
``.icm`` header names the file and ``icm decompress`` / ``icm predict`` find it again from the same folder.
Feature codecs take their backbone weights from the training config in the file (``none`` = the seeded
random initialisation a smoke run uses; an enum member such as ``IMAGENET1K_V1``; ``default``; or a file).
"""

from __future__ import annotations

import json
from pathlib import Path

from icmkit.codecs.base import Codec
from icmkit.errors import IcmError
from icmkit.weights import read_metadata

SUFFIX = ".safetensors"


def looks_like_weights_file(name: str) -> bool:
    return name.endswith(SUFFIX) and Path(name).is_file()


def codec_from_weights_file(path: str) -> Codec:
    from icmkit.codecs.feature import FeatureCodec
    from icmkit.codecs.learned import LearnedPixelCodec, VariableRatePixelCodec
    from icmkit.models import DICMFeatureCodec, VariableRateHyperprior
    from icmkit.models.redundancy import RedundancyFilter

    metadata = read_metadata(path)
    architecture = metadata.get("architecture")
    if architecture == DICMFeatureCodec.architecture:
        try:
            backbone_weights = json.loads(metadata.get("train_config", "{}")).get("backbone_weights", "default")
        except json.JSONDecodeError:
            raise IcmError(f"{path}: malformed training config in its metadata") from None
        weights = None if backbone_weights == "none" else backbone_weights
        return FeatureCodec.from_weights_file(path, name=path, backbone_weights=weights)
    if architecture == VariableRateHyperprior.architecture:
        return VariableRatePixelCodec.from_weights_file(path, name=path)
    if architecture is None:
        raise IcmError(f"{path}: not an icmkit weights file (no architecture in its metadata)")
    if architecture == RedundancyFilter.architecture:
        raise IcmError(
            f"{path}: a redundancy-elimination module (DICM's stage 2), not a codec: stage 4 "
            "(re_from=…) builds the codec around it"
        )
    return LearnedPixelCodec.from_weights_file(path, name=path)
