"""A later DICM stage starting from an RE module file, checked against the run's config and backbone head.

Stage 3 (``ssl_re_from``) and stage 4 (``re_from``) both read a
:class:`~icmkit.models.redundancy.RedundancyFilter` file. Its widths must be the config's ``re_levels`` /
``re_width`` / ``re_latent`` (the config describes the model it trains; silently taking the file's would hide a
recipe that drifted from its predecessor), and it must have been trained on the head that ``backbone_weights``
gives (an RE module filters one head's features; stage 3 records the head it trained alongside).
"""

from __future__ import annotations

from icmkit.backbones.split import SplitInfo
from icmkit.errors import ConfigError, IcmError
from icmkit.models.dicm import DICMFeatureModel
from icmkit.models.redundancy import RedundancyFilter
from icmkit.train.config import TrainConfig
from icmkit.weights import read_redundancy_filter

RE_SHAPE_FIELDS = ("re_levels", "re_width", "re_latent")


def load_redundancy_filter(path: str, config: TrainConfig, info: SplitInfo, field: str) -> RedundancyFilter:
    """The RE module of file ``path`` (named by config field ``field``); a one-line :class:`ConfigError` when it
    cannot be read, has other widths than the config or was trained on another head than ``info``'s."""
    try:
        module = read_redundancy_filter(path)
    except IcmError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    stored = module.config
    differences = [
        f"{name} {stored[name]} (config: {config.get(name)})"
        for name in RE_SHAPE_FIELDS
        if stored[name] != config.get(name)
    ]
    if differences:
        raise ConfigError(
            f"{field} {path}: its RE module has {', '.join(differences)}; set re_levels / re_width / re_latent "
            "to the file's"
        )
    if (stored["backbone"], stored["split"], stored["channels"]) != (info.backbone, info.stage, info.channels):
        raise ConfigError(
            f"{field} {path}: filters {stored['backbone']} after {stored['split']} ({stored['channels']} channels), "
            f"not {info.backbone} after {info.stage} ({info.channels} channels)"
        )
    if stored["head_digest"] != info.head_digest.hex():
        raise ConfigError(
            f"{field} {path}: trained on another {info.backbone} head (digest {stored['head_digest']}; "
            f"backbone_weights give {info.head_digest.hex()}): use the backbone_weights of the run that wrote it"
        )
    return module


def start_codec_from_redundancy_filter(codec: DICMFeatureModel, config: TrainConfig, info: SplitInfo) -> None:
    """Stage 4: ``config.model.re_from``'s RE weights and feature statistics into ``codec``, frozen if ``re_frozen``
    (its parameters then get no gradient, so neither optimiser moves them)."""
    module = load_redundancy_filter(config.model.re_from, config, info, "re_from")
    module.install_in(codec)
    if config.model.re_frozen:
        codec.re.requires_grad_(False)
