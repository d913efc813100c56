"""Rate control for any codec: search its quality knob for a size, a fidelity, or the machine's decision.

A *target* is one of

- ``bytes`` / ``bpp`` — the best (highest-rate) stream whose size is at most the target;
- ``psnr`` — the smallest stream whose decoded PSNR is at least the target;
- ``keep`` — the smallest stream from which a classifier still makes the original's decision: the
  decoded image's (pixel codecs) or decoded features' (feature codecs, through their backbone's tail) top-1
  equals the original's top-1 (``keep="top1"``) or the original's top-1 is in the decoded top 5 (``"top5"``),
  optionally with a floor on the decoded probability of that class (``min_confidence``).

The search runs over every value the knob accepts, ordered by rate (integer knobs: each integer; continuous
knobs: every step of :attr:`QualitySpec.resolution`; sparse knobs: the shipped points). It assumes the
predicate is monotone in the quality and bisects: the two ends first (an unreachable target costs one encode,
a target every stream meets two), then halves — ``⌈log2 n⌉ + 2`` encodes at most, each quality coded once
(results are cached). Size is monotone for every codec here; PSNR and the classifier's decision are only
nearly so, and the search still returns a stream that *meets* the target (it never returns an untested
quality), though not always the smallest that would.

Written by hand because the field's libraries have no such search: CompressAI, CompressAI-Vision and sc2bench
code at a fixed quality, and encoders' own rate control (x265 ``--bitrate``, libjpeg-turbo has none) is per
codec and per video, not per still image and not for a machine's decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from icmkit.codecs.base import Codec, Quality, QualitySpec
from icmkit.decoded import CodecKind, FeatureMaps
from icmkit.errors import IcmError

KINDS = ("bytes", "bpp", "psnr", "keep")
KEEP_MODES = ("top1", "top5")


class TargetError(IcmError):
    """A target that is malformed, conflicting or (without best effort) unreachable."""


@dataclass(frozen=True)
class Target:
    """What the stream must achieve; see the module's documentation."""

    kind: str
    value: float = 0.0  # bytes, bpp or dB; unused for keep
    keep: str = "top1"
    min_confidence: float = 0.0
    model: str | None = None  # keep, pixel codecs: the classifier (None: the default one)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TargetError(f"unknown target {self.kind!r}; one of {', '.join(KINDS)}")
        if self.kind == "keep":
            if self.keep not in KEEP_MODES:
                raise TargetError(f"--keep must be top1 or top5, got {self.keep!r}")
            if not 0 <= self.min_confidence < 1:
                raise TargetError(f"--min-confidence must be in [0, 1), got {self.min_confidence:g}")
            return
        if not math.isfinite(self.value) or self.value <= 0:
            raise TargetError(f"a {self.kind} target must be a positive number, got {self.value:g}")
        if self.kind == "bytes" and not float(self.value).is_integer():
            raise TargetError(f"a bytes target must be a whole number, got {self.value:g}")
        if self.kind == "psnr" and self.value > 100:
            raise TargetError(f"a PSNR target above 100 dB is out of range (8-bit images), got {self.value:g}")
        if self.kind == "bpp" and self.value > 48:
            raise TargetError(f"a bpp target above 48 (16-bit RGB, uncompressed) is out of range, got {self.value:g}")

    @property
    def size_bound(self) -> bool:
        """True for targets that cap the size (the best stream is the largest that fits)."""
        return self.kind in ("bytes", "bpp")

    def describe(self) -> str:
        """Short, e.g. ``bytes<=4000``, ``psnr>=36``, ``keep-top1``, ``keep-top1,p>=0.5`` (stored in .icm headers)."""
        if self.kind == "keep":
            text = f"keep-{self.keep}" + (f",p>={self.min_confidence:g}" if self.min_confidence else "")
            return text + (f",{self.model}" if self.model else "")
        return f"{self.kind}{'<=' if self.size_bound else '>='}{self.value:g}"


@dataclass
class Trial:
    """One quality the search coded: the stream's size, what it achieved and whether it meets the target."""

    quality: Quality
    size: int
    value: float | None  # PSNR in dB, or the decoded probability of the kept class; None for size targets
    meets: bool


@dataclass
class SearchResult:
    """The chosen stream, its quality, what it achieved and what the search cost."""

    data: bytes
    quality: Quality
    met: bool  # False only for a best-effort result of an unreachable target
    achieved: str  # human-readable, e.g. "3,987 bytes", "36.41 dB", "class 281 (p = 0.83)"
    encodes: int
    trials: list[Trial] = field(default_factory=list)


def candidates(spec: QualitySpec) -> list[Quality]:
    """Every quality the knob accepts, from the lowest to the highest rate."""
    if spec.allowed is not None:
        values = sorted(spec.allowed)
    elif spec.continuous:
        steps = round((spec.hi - spec.lo) / spec.resolution)
        values = [spec.from_id(k + 1) for k in range(steps + 1)]
    else:
        values = list(range(int(spec.lo), int(spec.hi) + 1))
    return values if spec.rate_increases else values[::-1]


class Judge:
    """Whether a coded stream meets the target; caches the original's classification for ``keep``.

    Args:
        codec: The codec that wrote the streams (and decodes them).
        image: The original image, ``H×W×3`` uint8: its size for ``bpp``, its pixels for ``psnr`` and ``keep``.
        target: What a stream must achieve.
        weights (str | os.PathLike | None): The ``keep`` classifier's weights, as
            :func:`~icmkit.tasks.predict.predict` takes them.
    """

    def __init__(self, codec: Codec, image: np.ndarray, target: Target, weights="default"):
        self.codec, self.image, self.target, self.weights = codec, image, target, weights
        self._reference: int | None = None

    def __call__(self, data: bytes) -> tuple[bool, float | None]:
        target = self.target
        if target.kind == "bytes":
            return len(data) <= target.value, None
        if target.kind == "bpp":
            return 8 * len(data) / (self.image.shape[0] * self.image.shape[1]) <= target.value, None
        decoded = self.codec.decode(data)
        if target.kind == "psnr":
            if isinstance(decoded, FeatureMaps):
                raise TargetError(f"{self.codec.name} decodes to features: a PSNR target does not apply")
            from icmkit.fidelity import psnr

            value = psnr(self.image, decoded)
            return value >= target.value, value
        return self._keeps(decoded)

    def reference_class(self) -> int:
        """The classifier's top-1 on the uncompressed input: the image (pixel codecs), or the head's features of
        the image through the same tail (feature codecs: the same view the decoded features give)."""
        if self._reference is None:
            from icmkit.tasks.predict import predict

            if self._feature_codec:
                if self.target.model is not None:
                    raise TargetError(f"{self.codec.name} streams feed their backbone's tail: leave out --model")
                reference = predict(self.codec.uncompressed(self.image), k=1, weights=self.weights)
            else:
                reference = predict(self.image, self.target.model, k=1, weights=self.weights)
            self._reference = reference.top_k[0].index
        return self._reference

    @property
    def _feature_codec(self) -> bool:
        return self.codec.kind == CodecKind.FEATURE

    def _keeps(self, decoded) -> tuple[bool, float]:
        from icmkit.tasks.predict import predict

        reference = self.reference_class()
        k = 1 if self.target.keep == "top1" else 5
        model = None if isinstance(decoded, FeatureMaps) else self.target.model
        prediction = predict(decoded, model, k=k, weights=self.weights)
        probability = float(prediction.probabilities[reference])
        kept = reference in {t.index for t in prediction.top_k}
        return kept and probability >= self.target.min_confidence, probability

    def achieved(self, trial: Trial) -> str:
        if self.target.kind == "bytes":
            return f"{trial.size:,} bytes"
        if self.target.kind == "bpp":
            return f"{8 * trial.size / (self.image.shape[0] * self.image.shape[1]):.4f} bpp"
        if self.target.kind == "psnr":
            return f"{trial.value:.2f} dB"
        return f"class {self.reference_class()} (p = {trial.value:.3f})"


def search(
    codec: Codec,
    image: np.ndarray,
    target: Target,
    *,
    best_effort: bool = False,
    weights="default",
    encode: Callable[[np.ndarray, Quality], bytes] | None = None,
    fallback: str = "closest",
) -> SearchResult:
    """The stream of ``codec`` for ``image`` that meets ``target`` best (see the module's documentation).

    An unreachable target raises :class:`TargetError`, or with ``best_effort`` returns, with ``met=False``, the
    closest stream (the smallest for a size cap, the largest otherwise) — or with ``fallback="smallest"`` the
    smallest stream in every case (when no stream keeps a decision, spending more bits buys nothing).
    ``weights`` are the keep classifier's; ``encode`` replaces ``codec.encode`` (e.g. to add a header record)."""
    if fallback not in ("closest", "smallest"):
        raise ValueError(f"fallback must be closest or smallest, got {fallback!r}")
    encode = encode or codec.encode
    judge = Judge(codec, image, target, weights)
    qualities = candidates(codec.quality)
    trials: dict[int, Trial] = {}
    streams: dict[int, bytes] = {}

    def probe(index: int) -> Trial:
        if index not in trials:
            data = encode(image, qualities[index])
            meets, value = judge(data)
            streams[index], trials[index] = data, Trial(qualities[index], len(data), value, meets)
        return trials[index]

    def result(index: int, met: bool) -> SearchResult:
        ordered = [trials[i] for i in sorted(trials)]
        return SearchResult(streams[index], qualities[index], met, judge.achieved(trials[index]), len(trials), ordered)

    low, high = 0, len(qualities) - 1
    if target.size_bound:  # the largest index that fits; fitting is true at the low end
        if not probe(low).meets:
            return _unreachable(result(low, False), target, codec, best_effort)
        if probe(high).meets:
            return result(high, True)
        while high - low > 1:  # invariant: low fits, high does not
            middle = (low + high) // 2
            low, high = (middle, high) if probe(middle).meets else (low, middle)
        return result(low, True)
    # the smallest index that meets a quality target; meeting is true at the high end
    if not probe(high).meets:
        if best_effort and fallback == "smallest":
            probe(low)
            return _unreachable(result(low, False), target, codec, best_effort)
        return _unreachable(result(high, False), target, codec, best_effort)
    if probe(low).meets:
        return result(low, True)
    while high - low > 1:  # invariant: high meets, low does not
        middle = (low + high) // 2
        low, high = (low, middle) if probe(middle).meets else (middle, high)
    return result(high, True)


def _unreachable(closest: SearchResult, target: Target, codec: Codec, best_effort: bool) -> SearchResult:
    end = "smallest" if target.size_bound else "largest"
    message = (
        f"target {target.describe()} is unreachable with {codec.name}: its {end} stream (quality "
        f"{closest.quality}) gives {closest.achieved}"
    )
    if not best_effort:
        raise TargetError(message + " (--best-effort keeps that stream)")
    return closest


def compress_to_target(
    codec: Codec,
    image: np.ndarray,
    target: Target,
    *,
    best_effort: bool = False,
    weights="default",
    fallback: str = "closest",
) -> SearchResult:
    """:func:`search`, and for codecs whose ``.icm`` header takes it (``header_records``), the rate-control
    record in the chosen stream (``icm info`` shows it). A size target's record is in every stream the search
    weighs, so the bytes it adds count against the target."""
    from icmkit import bitstream

    if not getattr(codec, "header_records", False):
        return search(codec, image, target, best_effort=best_effort, weights=weights, fallback=fallback)

    def encode(picture: np.ndarray, quality: Quality) -> bytes:
        return bitstream.with_record(codec.encode(picture, quality), target.describe())

    if target.size_bound:
        return search(codec, image, target, best_effort=best_effort, weights=weights, encode=encode, fallback=fallback)
    result = search(codec, image, target, best_effort=best_effort, weights=weights, fallback=fallback)
    note = "" if result.met else ";not met"
    result.data = bitstream.with_record(result.data, f"{target.describe()};{result.achieved}{note}")
    return result
