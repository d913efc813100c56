"""MoCo's encoder with DICM's redundancy-elimination (RE) module between the classifier's head and tail.

::

    images ─ normalise ─ head (… `split`) ─ f1 ─ standardise ─ RE ─ f2 ─ restore ─ tail ─ pooled map
        ─ projection ─ embedding;      beside it: bpp of RE's latent and L1(f2, f1) (standardised)

DICM's stage 3 trains backbone and RE together on InfoNCE plus those two terms (:mod:`icmkit.losses.redundancy`):
the head's gradients pass through RE, and the L1 term pulls f2 and f1 together from both sides, as in the
reference's joint stage. The momentum key encoder is a copy of the whole path, RE included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from icmkit.backbones.split import split_parts
from icmkit.losses.redundancy import redundancy_terms
from icmkit.models.redundancy import RedundancyFilter
from icmkit.ssl.encoder import ClassifierTrunk, EmbeddingEncoder


class FilteredTrunk(ClassifierTrunk):
    """A classifier trunk whose features pass through ``re_filter`` after stage ``stage``.

    Args:
        model: The classifier (as :class:`~icmkit.ssl.encoder.ClassifierTrunk` takes it), split but not copied.
        stage: The stage after which the RE module runs (the feature codec's split).
        re_filter: The RE module and its feature statistics, trained with the classifier.
    """

    def __init__(self, model: nn.Module, stage: str, re_filter: RedundancyFilter):
        super().__init__(model)
        head, tail_stages, finish = split_parts(model, stage)
        self.re_filter = re_filter
        # Views of self.model's own modules, held in plain lists and a bound method so that they are not
        # registered a second time (state dicts, DDP); a deep copy (the key encoder) maps them onto its copies.
        self._head = head
        self._tail = [module for _, module in tail_stages]
        self._finish_map = finish.feature_map

    def filtered_feature_map(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Normalised images → (the map the classifier pools, the RE module's output dict)."""
        for module in self._head:
            x = module(x)
        filtered = self.re_filter(x)
        x = self.re_filter.restore(filtered["filtered"])
        for stage in self._tail:
            x = stage(x)
        return self._finish_map(x), filtered

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.filtered_feature_map(x)[0]


class FilteredEmbeddingEncoder(EmbeddingEncoder):
    """:class:`~icmkit.ssl.encoder.EmbeddingEncoder` over a :class:`FilteredTrunk`; ``forward(images,
    with_re_terms=True)`` also returns the RE terms ``{"bpp_re", "l1_re"}`` of the batch.

    Args:
        classifier: The classifier (a timm model or a torchvision ResNet).
        stage: The stage after which the RE module runs (the feature codec's split).
        re_filter: The RE module and its feature statistics; its entropy model's quantiles are frozen here.
        mean: Per-channel RGB mean of the classifier's input normalisation.
        std: Per-channel RGB standard deviation, likewise.
        projection_dim: Width ``d`` of the embeddings.
        bn_groups: How many consecutive chunks the batch runs through the trunk in, each with its own
            BatchNorm statistics (as in :class:`~icmkit.ssl.encoder.EmbeddingEncoder`).
    """

    def __init__(
        self,
        classifier: nn.Module,
        stage: str,
        re_filter: RedundancyFilter,
        mean: Sequence[float],
        std: Sequence[float],
        projection_dim: int = 128,
        bn_groups: int = 1,
    ):
        super().__init__(FilteredTrunk(classifier, stage, re_filter), mean, std, projection_dim, bn_groups)
        # No loss here reaches the quantiles of RE's entropy model (they only bound coding tables, and RE's latent
        # is never coded): frozen, so that DDP does not wait for gradients they never get.
        for parameter in re_filter.aux_parameters():
            parameter.requires_grad_(False)

    @property
    def re_filter(self) -> RedundancyFilter:
        return self.trunk.re_filter

    def forward(self, images: torch.Tensor, with_re_terms: bool = False):
        pooled, terms, shares = [], [], []
        for chunk in self.bn_chunks(images):
            feature_map, filtered = self.trunk.filtered_feature_map(self.normalise(chunk))
            pooled.append(self.trunk.pool(feature_map))
            if with_re_terms:
                terms.append(redundancy_terms(filtered, chunk.shape[0] * chunk.shape[2] * chunk.shape[3]))
                shares.append(chunk.shape[0] / images.shape[0])
        embeddings = self.embed(torch.cat(pooled))
        if not with_re_terms:
            return embeddings
        # Each BN group's terms are means over its own images: weighted by its share, they are the batch's.
        return embeddings, {name: sum(s * t[name] for s, t in zip(shares, terms)) for name in terms[0]}
