"""A codec over a weights file a user trained (``icm train``'s ``final.safetensors``), named by its path.

``icm compress --codec runs/my-codec/final.safetensors`` (and ``icm bench --codecs PATH``) use a run's weights
without registering anything: the registry builds the codec on first use, under the path as its name, so the
``.icm`` header names the file. A header never resolves to a file (a stream must not choose the weights that read
it): ``icm decompress`` / ``icm predict`` / ``icm info`` take the file again with ``--codec PATH``. The file is the
user's choice, not trusted for that: :func:`icmkit.weights.check_weights_file` checks its header (architecture,
bounded config values, tensor names, shapes and dtypes, table sizes) before anything is built, and loading checks
its values (finite, tables that are distributions, a strictly increasing scale table).
Feature codecs take their backbone weights from the training config in the file (``none`` = the seeded
random initialisation a smoke run uses; an enum member such as ``IMAGENET1K_V1``; ``default``; or a file).
"""

from __future__ import annotations

import json
from pathlib import Path

from icmkit.codecs.base import Codec
from icmkit.errors import IcmError
from icmkit.weights import check_weights_file, read_metadata

SUFFIX = ".safetensors"


def looks_like_weights_file(name: str) -> bool:
    return name.endswith(SUFFIX) and Path(name).is_file()


def codec_from_weights_file(path: str) -> Codec:
    from icmkit.codecs.feature import FeatureCodec
    from icmkit.codecs.learned import LearnedPixelCodec, VariableRatePixelCodec
    from icmkit.models import DICMFeatureModel, VariableRateHyperprior
    from icmkit.models.redundancy import RedundancyFilter

    metadata = read_metadata(path)
    architecture = metadata.get("architecture")
    if architecture == RedundancyFilter.architecture:
        raise IcmError(
            f"{path}: a redundancy-elimination module (DICM's stage 2), not a codec: stage 4 "
            "(re_from=…) builds the codec around it"
        )
    checked = check_weights_file(path)  # before anything is built from the file
    if architecture == "restoration-cnn":  # a filter behind its base codec: BASE+PATH
        from icmkit.codecs.registry import registered_codec
        from icmkit.codecs.restored import restored_codec_from_file

        return restored_codec_from_file(path, registered_codec(checked.config.get("base", "")))
    if architecture == DICMFeatureModel.architecture:
        return FeatureCodec.from_weights_file(path, name=path, backbone_weights=_backbone_weights(path, metadata))
    if architecture == VariableRateHyperprior.architecture:
        qualities = checked.config.get("qualities", 1)
        if (qualities - 1) / VariableRatePixelCodec.RESOLUTION + 1 > 255:
            raise IcmError(f"{path}: {qualities} rate points do not fit an .icm header's quality byte")
        return VariableRatePixelCodec.from_weights_file(path, name=path)
    return LearnedPixelCodec.from_weights_file(path, name=path)


def _backbone_weights(path: str, metadata: dict[str, str]):
    """The backbone weights a feature codec file's training config names: None for ``none``, else the text."""
    try:
        train_config = json.loads(metadata.get("train_config", "{}"))
    except (json.JSONDecodeError, RecursionError):
        raise IcmError(f"{path}: malformed training config in its metadata") from None
    if not isinstance(train_config, dict):
        raise IcmError(f"{path}: malformed training config in its metadata (not an object)")
    backbone_weights = train_config.get("backbone_weights", "default")
    if not isinstance(backbone_weights, str) or not backbone_weights or len(backbone_weights) > 4096:
        raise IcmError(f"{path}: malformed training config in its metadata (backbone_weights)")
    return None if backbone_weights == "none" else backbone_weights
