"""What a training config builds: the codec model, its objective and, for feature codecs, the backbone.

The RE stage (``architecture: dicm-re``, DICM's stage 2) trains like a feature codec — frozen backbone, feature
statistics, main and auxiliary optimisers, checkpoints — so it is built here too: the model is a
:class:`~icmkit.models.redundancy.RedundancyFilter`, the objective a
:class:`~icmkit.losses.redundancy.RedundancyObjective`."""

from __future__ import annotations

from icmkit.backbones import SplitBackbone, SplitError, split_classifier
from icmkit.errors import ConfigError, IcmError
from icmkit.losses import FeatureTap, PerceptionConsistencyLoss
from icmkit.losses.feature import FeatureCodecTraining, FeatureObjective, parse_stage_weights
from icmkit.losses.redundancy import RedundancyObjective
from icmkit.models import ARCHITECTURES, CompressionModel, DICMFeatureModel, VariableRateHyperprior, build_model
from icmkit.models.redundancy import RedundancyFilter
from icmkit.train.config import DICM_RE, TrainConfig


def is_feature_codec(config: TrainConfig) -> bool:
    return ARCHITECTURES.get(config.architecture) is DICMFeatureModel


def trains_on_backbone_features(config: TrainConfig) -> bool:
    """Feature codecs and the RE stage: models fed by a frozen backbone's head."""
    return is_feature_codec(config) or config.architecture == DICM_RE


def is_variable_rate_pixel_codec(config: TrainConfig) -> bool:
    return ARCHITECTURES.get(config.architecture) is VariableRateHyperprior


def load_backbone(config: TrainConfig, weights: str = "") -> SplitBackbone:
    """``config``'s backbone split after ``config.split``, with ``weights`` (default: ``config.backbone_weights``)."""
    weights = weights or config.backbone_weights
    weights = None if weights == "none" else weights
    try:
        return split_classifier(config.backbone, config.split, weights)
    except SplitError as exc:
        raise ConfigError(f"split: {exc}") from None


def build_codec_model(config: TrainConfig, backbone: SplitBackbone | None = None) -> CompressionModel:
    """The architecture ``config`` names; feature codecs record the backbone's split and head digest."""
    if config.architecture == DICM_RE:
        return build_redundancy_filter(config, backbone or load_backbone(config))
    if config.architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {config.architecture!r}; known: {', '.join(ARCHITECTURES)}")
    if is_variable_rate_pixel_codec(config):
        return build_model(
            config.architecture, N=config.N, M=config.M, qualities=max(1, len(config.lmbdas)), context=config.context
        )
    if not is_feature_codec(config):
        return build_model(config.architecture, N=config.N, M=config.M)
    info = (backbone or load_backbone(config)).info
    return build_model(
        config.architecture,
        channels=info.channels,
        backbone=info.backbone,
        split=info.stage,
        head_digest=info.head_digest.hex(),
        N=config.N,
        M=config.M,
        hyper=config.hyper,
        re_levels=config.re_levels,
        re_width=config.re_width,
        re_latent=config.re_latent,
        block=config.block,
        context=config.context,
        qualities=max(1, len(config.lmbdas)),
        latent_levels=config.latent_levels,
        hyper_synthesis=config.hyper_synthesis,
    )


def build_perception(config: TrainConfig) -> PerceptionConsistencyLoss:
    """Seed 000's perception-consistency term on the config's frozen classifier (loaded here)."""
    from icmkit.pretrained.classifiers import load_classifier

    weights = None if config.perception_weights == "none" else config.perception_weights
    classifier = load_classifier(config.perception_model, weights)
    try:
        tap = FeatureTap.from_classifier(classifier, config.perception_layers)
    except ValueError as exc:
        raise ConfigError(f"perception_layers: {exc}") from None
    return PerceptionConsistencyLoss(
        tap,
        config.perception_layer_weights or None,
        config.mmd_samples,
        tuple(config.mmd_bandwidths),
        config.distill_weight,
        config.distill_temperature,
    )


def build_redundancy_filter(config: TrainConfig, backbone: SplitBackbone) -> RedundancyFilter:
    info = backbone.info
    return RedundancyFilter(
        info.channels,
        backbone=info.backbone,
        split=info.stage,
        head_digest=info.head_digest.hex(),
        re_levels=config.re_levels,
        re_width=config.re_width,
        re_latent=config.re_latent,
    )


def build_feature_objective(config: TrainConfig, backbone: SplitBackbone) -> FeatureObjective | RedundancyObjective:
    """The objective of a model fed by ``backbone``'s head: a feature codec's, or the RE stage's."""
    if config.architecture == DICM_RE:
        return RedundancyObjective(config.re_rate_weight, config.re_distortion_weight)
    try:
        stages = parse_stage_weights(config.tail_stages, config.tail_stage_weights)
        return FeatureObjective(
            backbone,
            config.lmbdas or [config.lmbda],
            config.feature_weight,
            stages,
            config.distill_weight,
            config.distill_temperature,
            config.re_rate_weight,
            config.re_distortion_weight,
            config.feature_target,
            config.distill_floor,
        )
    except (ValueError, IcmError) as exc:
        raise ConfigError(f"tail_stages: {exc}") from None


__all__ = [
    "FeatureCodecTraining",
    "build_codec_model",
    "build_feature_objective",
    "build_perception",
    "build_redundancy_filter",
    "is_feature_codec",
    "is_variable_rate_pixel_codec",
    "load_backbone",
    "trains_on_backbone_features",
]
