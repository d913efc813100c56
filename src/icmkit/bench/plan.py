"""Which codecs at which qualities a benchmark runs: ``jpeg,hevc444,icm-mse:1,3`` style specs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from icmkit.codecs.base import Quality
from icmkit.defaults import DEFAULT_BENCH_CODECS
from icmkit.errors import IcmError

DEFAULT_CODECS = DEFAULT_BENCH_CODECS
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # integer knobs validate further; continuous ones take decimals


@dataclass(frozen=True)
class CodecPlan:
    """One codec of a benchmark and the qualities it runs at (validated by :func:`parse_codec_spec`)."""

    codec: str
    qualities: tuple[Quality, ...]


def parse_codec_spec(spec: str) -> list[CodecPlan]:
    """``name`` takes the codec's default grid; ``name:q1,q2`` lists qualities (later bare numbers
    continue the previous codec's list). Every codec and quality is validated before any work."""
    from icmkit.codecs.registry import get_codec

    plans: list[tuple[str, list[str]]] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        name, sep, first = token.partition(":")
        if not sep and _NUMBER.fullmatch(token):
            if not plans:
                raise IcmError(f"--codecs: quality {token} comes before any codec name")
            plans[-1][1].append(token)
            continue
        if sep and not _NUMBER.fullmatch(first):
            raise IcmError(f"--codecs: {first!r} is not a quality (a number)")
        plans.append((name, [first] if sep else []))
    if not plans:
        raise IcmError("--codecs names no codec")
    result = []
    for name, qualities in plans:
        codec = get_codec(name)
        codec.require_available()
        chosen = tuple(codec.quality.validate(q) for q in qualities) if qualities else codec.quality.grid
        result.append(CodecPlan(name, tuple(dict.fromkeys(chosen))))
    if len({p.codec for p in result}) != len(result):
        raise IcmError("--codecs names a codec twice; list all its qualities after one name")
    return result
