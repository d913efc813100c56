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
    return ARCHITECTURES.get(config.model.architecture) is DICMFeatureModel


def trains_on_backbone_features(config: TrainConfig) -> bool:
    """Feature codecs and the RE stage: models fed by a frozen backbone's head."""
    return is_feature_codec(config) or config.model.architecture == DICM_RE


def is_variable_rate_pixel_codec(config: TrainConfig) -> bool:
    return ARCHITECTURES.get(config.model.architecture) is VariableRateHyperprior


def load_backbone(config: TrainConfig, weights: str = "") -> SplitBackbone:
    """``config``'s backbone split after ``config.model.split``, with ``weights`` (default: the config's
    ``backbone_weights``)."""
    weights = weights or config.model.backbone_weights
    weights = None if weights == "none" else weights
    try:
        return split_classifier(config.model.backbone, config.model.split, weights)
    except SplitError as exc:
        raise ConfigError(f"split: {exc}") from None


def build_codec_model(config: TrainConfig, backbone: SplitBackbone | None = None) -> CompressionModel:
    """The architecture ``config`` names; feature codecs record the backbone's split and head digest."""
    if config.model.architecture == DICM_RE:
        return build_redundancy_filter(config, backbone or load_backbone(config))
    if config.model.architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {config.model.architecture!r}; known: {', '.join(ARCHITECTURES)}")
    if is_variable_rate_pixel_codec(config):
        return build_model(
            config.model.architecture,
            N=config.model.N,
            M=config.model.M,
            qualities=max(1, len(config.loss.lmbdas)),
            context=config.model.context,
        )
    if not is_feature_codec(config):
        return build_model(config.model.architecture, N=config.model.N, M=config.model.M)
    info = (backbone or load_backbone(config)).info
    return build_model(
        config.model.architecture,
        channels=info.channels,
        backbone=info.backbone,
        split=info.stage,
        head_digest=info.head_digest.hex(),
        N=config.model.N,
        M=config.model.M,
        hyper=config.model.hyper,
        re_levels=config.model.re_levels,
        re_width=config.model.re_width,
        re_latent=config.model.re_latent,
        block=config.model.block,
        context=config.model.context,
        qualities=max(1, len(config.loss.lmbdas)),
        latent_levels=config.model.latent_levels,
        hyper_synthesis=config.model.hyper_synthesis,
    )


def build_perception(config: TrainConfig) -> PerceptionConsistencyLoss:
    """Seed 000's perception-consistency term on the config's frozen classifier (loaded here)."""
    from icmkit.pretrained.classifiers import load_classifier

    weights = None if config.loss.perception_weights == "none" else config.loss.perception_weights
    classifier = load_classifier(config.loss.perception_model, weights)
    try:
        tap = FeatureTap.from_classifier(classifier, config.loss.perception_layers)
    except ValueError as exc:
        raise ConfigError(f"perception_layers: {exc}") from None
    return PerceptionConsistencyLoss(
        tap,
        config.loss.perception_layer_weights or None,
        config.loss.mmd_samples,
        tuple(config.loss.mmd_bandwidths),
        config.loss.distill_weight,
        config.loss.distill_temperature,
    )


def build_redundancy_filter(config: TrainConfig, backbone: SplitBackbone) -> RedundancyFilter:
    info = backbone.info
    return RedundancyFilter(
        info.channels,
        backbone=info.backbone,
        split=info.stage,
        head_digest=info.head_digest.hex(),
        re_levels=config.model.re_levels,
        re_width=config.model.re_width,
        re_latent=config.model.re_latent,
    )


def build_feature_objective(config: TrainConfig, backbone: SplitBackbone) -> FeatureObjective | RedundancyObjective:
    """The objective of a model fed by ``backbone``'s head: a feature codec's, or the RE stage's."""
    if config.model.architecture == DICM_RE:
        return RedundancyObjective(config.loss.re_rate_weight, config.loss.re_distortion_weight)
    try:
        stages = parse_stage_weights(config.loss.tail_stages, config.loss.tail_stage_weights)
        return FeatureObjective(
            backbone,
            config.loss.lmbdas or [config.loss.lmbda],
            config.loss.feature_weight,
            stages,
            config.loss.distill_weight,
            config.loss.distill_temperature,
            config.loss.re_rate_weight,
            config.loss.re_distortion_weight,
            config.loss.feature_target,
            config.loss.distill_floor,
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
