"""Which codecs at which qualities a benchmark runs: ``jpeg,hevc444,icm-mse:1,3`` style specs."""

from __future__ import annotations

from dataclasses import dataclass

from icmkit.defaults import DEFAULT_BENCH_CODECS
from icmkit.errors import IcmError

DEFAULT_CODECS = DEFAULT_BENCH_CODECS


@dataclass(frozen=True)
class CodecPlan:
    codec: str
    qualities: tuple[int, ...]


def parse_codec_spec(spec: str) -> list[CodecPlan]:
    """``name`` takes the codec's default grid; ``name:q1,q2`` lists qualities (later bare numbers
    continue the previous codec's list). Every codec and quality is validated before any work."""
    from icmkit.codecs.registry import get_codec

    plans: list[tuple[str, list[int]]] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        name, sep, first = token.partition(":")
        if not sep and token.lstrip("-").isdigit():
            if not plans:
                raise IcmError(f"--codecs: quality {token} comes before any codec name")
            plans[-1][1].append(int(token))
            continue
        try:
            qualities = [int(first)] if sep else []
        except ValueError:
            raise IcmError(f"--codecs: {first!r} is not an integer quality") from None
        plans.append((name, qualities))
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
