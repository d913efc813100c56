"""What a training config builds: the codec model, its objective and, for feature codecs, the backbone."""

from __future__ import annotations

from icmkit.backbones import SplitBackbone, SplitError, split_classifier
from icmkit.errors import ConfigError, IcmError
from icmkit.losses.feature import FeatureCodecTraining, FeatureObjective, parse_stage_weights
from icmkit.models import ARCHITECTURES, CompressionModel, DICMFeatureCodec, VariableRateHyperprior, build_model
from icmkit.train.config import TrainConfig


def is_feature_codec(config: TrainConfig) -> bool:
    return ARCHITECTURES.get(config.architecture) is DICMFeatureCodec


def is_variable_rate_pixel_codec(config: TrainConfig) -> bool:
    return ARCHITECTURES.get(config.architecture) is VariableRateHyperprior


def load_backbone(config: TrainConfig) -> SplitBackbone:
    weights = None if config.backbone_weights == "none" else config.backbone_weights
    try:
        return split_classifier(config.backbone, config.split, weights)
    except SplitError as exc:
        raise ConfigError(f"split: {exc}") from None


def build_codec_model(config: TrainConfig, backbone: SplitBackbone | None = None) -> CompressionModel:
    """The architecture ``config`` names; feature codecs record the backbone's split and head digest."""
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


def build_feature_objective(config: TrainConfig, backbone: SplitBackbone) -> FeatureObjective:
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
        )
    except (ValueError, IcmError) as exc:
        raise ConfigError(f"tail_stages: {exc}") from None


__all__ = [
    "FeatureCodecTraining",
    "build_codec_model",
    "build_feature_objective",
    "is_feature_codec",
    "is_variable_rate_pixel_codec",
    "load_backbone",
]
