"""Human-readable ImageNet-1k class names for classifier outputs (offline: timm ships the table)."""

from __future__ import annotations

from functools import cache

IMAGENET_CLASSES = 1000


@cache
def _imagenet_info():
    from timm.data import ImageNetInfo

    return ImageNetInfo("imagenet-1k")


def class_label(index: int, num_classes: int = IMAGENET_CLASSES) -> str:
    """The ImageNet-1k description of class ``index`` (e.g. ``"tiger cat"``) when the classifier has the
    1,000 ImageNet classes; ``"class <index>"`` for any other label space (icmkit cannot know its names)."""
    if num_classes == IMAGENET_CLASSES and 0 <= index < IMAGENET_CLASSES:
        return _imagenet_info().index_to_description(int(index))
    return f"class {index}"
