"""DICM's redundancy-elimination (RE) module on its own: what stage 2 trains and stages 3 and 4 start from.

::

    f1 (head features) ─ standardise ─ RE ─▶ f2 (standardised), likelihoods of RE's rounded latent

A :class:`RedundancyFilter` holds the :class:`~icmkit.models.dicm.RedundancyElimination` module and the feature
statistics it was trained with (RE works on standardised features: its weights mean nothing without them);
its ``config`` records the RE's widths and the backbone, split and head digest of the features it filters, so
a later stage refuses it on another head. Its files are icmkit weights files (``architecture: dicm-re``) but
not codecs — the RE latent is never transmitted, its rate is a training constraint.

- stage 2 (``icm train`` with ``architecture: dicm-re``) trains it on a frozen backbone's head;
- stage 3 (``moco-v2`` with ``ssl_re_from``) runs it between the classifier's head and tail
  (:mod:`icmkit.ssl.filtered`) and writes the jointly trained one beside the backbone;
- stage 4 (``dicm-feature`` with ``re_from``) copies it into the codec (:meth:`RedundancyFilter.install_in`).
"""

from __future__ import annotations

import torch

from icmkit.models.base import CompressionModel
from icmkit.models.dicm import DICMFeatureModel, RedundancyElimination
from icmkit.models.feature_statistics import FeatureStatistics
from icmkit.models.registry import records_config


@records_config
class RedundancyFilter(FeatureStatistics, CompressionModel):
    """DICM's RE module with the feature statistics it works in (the module docstring): a training stage, not a codec.

    Args:
        channels: Channels of the head features it filters.
        backbone: Name of the classifier whose head makes the features (empty: not recorded).
        split: The stage the head ends at.
        head_digest: Hex digest of the head's weights, so that later stages refuse it on another head.
        re_levels: Stride-2 steps of the RE module.
        re_width: Channels of the RE module's blocks.
        re_latent: Channels of the RE module's latent.
    """

    architecture = "dicm-re"
    qualities = 1  # trained by the feature-model path of the codec trainer, which draws a quality per step

    def __init__(
        self,
        channels: int,
        backbone: str = "",
        split: str = "",
        head_digest: str = "",
        re_levels: int = 2,
        re_width: int = 64,
        re_latent: int = 96,
    ):
        super().__init__()
        self.re = RedundancyElimination.at_levels(channels, re_width, re_latent, re_levels)
        self._register_feature_statistics(channels)

    def forward(self, f1: torch.Tensor, quality: int = 0) -> dict:
        """Head features → ``target`` (standardised f1), ``filtered`` (f2, standardised) and the likelihoods
        of RE's rounded latent (``quality``: unused, the trainer's feature-model signature)."""
        target = self.standardise(f1)
        filtered, likelihoods = self.re(target)
        return {"target": target, "filtered": filtered, "likelihoods": {"re": likelihoods}}

    def for_head(self, head_digest: str) -> RedundancyFilter:
        """A copy recorded as filtering the head of digest ``head_digest`` (stage 3 trains the head too)."""
        copy = type(self)(**{**self.config, "head_digest": head_digest})
        copy.load_state_dict(self.state_dict())
        return copy.train(self.training)

    @torch.no_grad()
    def install_in(self, codec: DICMFeatureModel) -> None:
        """Copy the RE weights and the feature statistics they were trained with into ``codec``, whose RE module
        must have this one's shape."""
        if codec.re is None:
            raise ValueError("the codec has no RE module (re_levels 0)")
        codec.re.load_state_dict(self.re.state_dict())
        codec.feature_mean.copy_(self.feature_mean)
        codec.feature_std.copy_(self.feature_std)
