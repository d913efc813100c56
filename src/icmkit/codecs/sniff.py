"""Which registered codec wrote a stream, from its first bytes (for decoding without ``--codec``)."""

from __future__ import annotations

from icmkit import bitstream
from icmkit.codecs.anchors._rawstream import MAGIC as RAW_MAGIC
from icmkit.codecs.anchors._rawstream import StreamKind

# Native file signatures of the conventional codecs' formats, most specific first.
_SIGNATURES: list[tuple[str, callable]] = [
    ("jpeg", lambda d: d[:3] == b"\xff\xd8\xff"),
    ("webp", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP"),
    ("jpeg2000", lambda d: d[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or d[:4] == b"\xff\x4f\xff\x51"),
    ("avif", lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"avif", b"avis")),
    ("jxl", lambda d: d[:2] == b"\xff\x0a" or d[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n"),
    ("hevc444", lambda d: d[:3] == RAW_MAGIC and len(d) > 3 and d[3] >> 4 == StreamKind.HEVC_444),
    ("vvc", lambda d: d[:3] == RAW_MAGIC and len(d) > 3 and d[3] >> 4 == StreamKind.VVC_420),
]


def sniff_codec(data: bytes) -> str | None:
    """Name of the codec that reads ``data``, or None when no signature matches."""
    if bitstream.peek_is_icm(data):
        return bitstream.read_codec_name(data)
    for name, matches in _SIGNATURES:
        if matches(data):
            return name
    return None
