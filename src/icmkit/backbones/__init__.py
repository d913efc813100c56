"""Frozen classifier backbones split into head and tail, for feature codecs."""

from icmkit.backbones.split import SplitBackbone, SplitError, SplitInfo, split_classifier, split_stages

__all__ = ["SplitBackbone", "SplitError", "SplitInfo", "split_classifier", "split_stages"]
