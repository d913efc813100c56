"""Per-image adaptive coding as a codec: ``hevc444@keep-top1`` codes each image at the quality that rate
control picks for it, so that a benchmark scores adaptive coding exactly as it scores fixed qualities.

The adaptive codec's own knob is the *tolerance level*: level ``k`` asks for the original's decision to survive
with a decoded probability of at least :data:`CONFIDENCE_SWEEP` ``[k − 1]`` for the kept class — a sweep from
"the same top-1 (or top-5), at any confidence" to stricter, so that the adaptive points form a curve beside
the fixed-quality one and a BD-rate between the two exists. An image whose decision no quality keeps (a
borderline one: even the highest-rate stream flips it) takes the codec's smallest stream — more bits would
buy nothing the target asks for.

The search classifier (default EfficientNet-Lite0) is part of the name when it is not the default
(``jpeg@keep-top1@tf_efficientnet_lite1``); scoring the same streams with other classifiers separates what is
real from an oracle effect.
"""

from __future__ import annotations

import numpy as np

from icmkit.codecs.base import Codec, Quality, QualitySpec
from icmkit.codecs.registry import get_codec, register_codec
from icmkit.defaults import DEFAULT_CLASSIFIER
from icmkit.errors import IcmError
from icmkit.ratecontrol.search import Target, compress_to_target

SEPARATOR = "@"
MODES = {"keep-top1": "top1", "keep-top5": "top5"}
CONFIDENCE_SWEEP = (0.0, 0.2, 0.4, 0.6)


class AdaptiveCodec(Codec):
    """A codec that codes each image with ``base`` at the quality rate control picks to keep the classifier's decision.

    Its quality is the tolerance level (see the module docstring); its streams are ``base``'s, so ``base`` decodes
    them.

    Args:
        base: The fixed-quality codec whose knob is searched.
        mode: ``"keep-top1"`` or ``"keep-top5"``: which decision must survive.
        model: The classifier the search keeps the decision of (``None``: the default one). Feature codecs
            ignore it: their streams feed their own backbone's tail.
    """

    def __init__(self, base: Codec, mode: str, model: str | None = None):
        if mode not in MODES:
            raise IcmError(f"unknown adaptive mode {mode!r}; one of {', '.join(MODES)}")
        self.base, self.mode, self.model = base, mode, model
        suffix = f"{SEPARATOR}{model}" if model and model != DEFAULT_CLASSIFIER else ""
        self.name = f"{base.name}{SEPARATOR}{mode}{suffix}"
        self.kind, self.extension = base.kind, base.extension
        self.description = f"{base.name}, quality chosen per image to keep the classifier's decision ({mode})"
        levels = tuple(range(1, len(CONFIDENCE_SWEEP) + 1))
        self.quality = QualitySpec(
            knob="tolerance level",
            grid=levels,
            lo=1,
            hi=len(levels),
            default=1,
            doc="level k keeps the decision with decoded probability ≥ "
            + " / ".join(f"{c:g}" for c in CONFIDENCE_SWEEP),
        )

    def availability(self):
        return self.base.availability()

    def target(self, level: Quality) -> Target:
        level = self.quality.validate(level)
        model = None if self.base.kind.value == "feature" else self.model
        return Target("keep", keep=MODES[self.mode], min_confidence=CONFIDENCE_SWEEP[level - 1], model=model)

    def encode(self, image: np.ndarray, quality: Quality | None = None) -> bytes:
        return compress_to_target(self.base, image, self.target(quality), best_effort=True, fallback="smallest").data

    def decode(self, data: bytes):
        return self.base.decode(data)

    def fingerprint(self, quality: Quality) -> str:
        return self.base.fingerprint(self.base.quality.default)


def base_name(name: str) -> str | None:
    """The fixed-quality codec an adaptive codec's name derives from (None for other names)."""
    return name.split(SEPARATOR, 1)[0] if SEPARATOR in name else None


def register_adaptive(codecs: list[str], mode: str, model: str | None = None, view=None) -> list[str]:
    """Register the adaptive variant of each codec (once); their names, in order. ``view`` maps each base codec
    to the one that codes (the benchmark's :func:`icmkit.bench.protocols.coding_view`)."""
    names = []
    for name in codecs:
        base = get_codec(name)
        codec = AdaptiveCodec(view(base) if view is not None else base, mode, model)
        try:
            get_codec(codec.name)
        except IcmError:
            register_codec(codec)
        names.append(codec.name)
    return names
