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
    """Name of the codec that reads ``data``, or None when no signature matches. For ``.icm`` data, the name its
    header holds — untrusted text: resolve it with :func:`icmkit.codecs.registry.stream_codec` (registered codecs
    only, never a file), not ``get_codec``."""
    if bitstream.peek_is_icm(data):
        return bitstream.read_codec_name(data)
    for name, matches in _SIGNATURES:
        if matches(data):
            return name
    return None


# What a file is, for messages about files a command cannot take: the codecs' formats, then other image formats.
_CODEC_FORMATS = {
    "jpeg": "a JPEG image",
    "webp": "a WebP image",
    "jpeg2000": "a JPEG 2000 image",
    "avif": "an AVIF image",
    "jxl": "a JPEG XL image",
    "hevc444": "an HEVC 4:4:4 stream (icmkit's hevc444 codec)",
    "vvc": "a VVC stream (icmkit's vvc codec)",
}
_OTHER_FORMATS: list[tuple[str, callable]] = [
    ("a PNG image", lambda d: d[:8] == b"\x89PNG\r\n\x1a\n"),
    ("a GIF image", lambda d: d[:6] in (b"GIF87a", b"GIF89a")),
    ("a BMP image", lambda d: d[:2] == b"BM" and len(d) >= 26),
    ("a TIFF image", lambda d: d[:4] in (b"II*\x00", b"MM\x00*")),
    ("a PNM image", lambda d: d[:1] == b"P" and d[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6") and d[2:3].isspace()),
    ("a HEIF image", lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"heic", b"heix", b"mif1", b"msf1")),
    ("a safetensors file", lambda d: len(d) > 9 and d[8:10] == b'{"'),
    ("a PDF document", lambda d: d[:5] == b"%PDF-"),
    ("a ZIP archive", lambda d: d[:4] == b"PK\x03\x04"),
]


def describe(data: bytes) -> str | None:
    """What ``data`` is in words (``"a PNG image"``, ``"an .icm stream of icm-mse"``), or None when unknown."""
    if bitstream.peek_is_icm(data):
        codec = bitstream.read_codec_name(data)
        return f"an .icm stream of {codec}" if codec and codec.isprintable() else "an .icm stream"
    name = next((name for name, matches in _SIGNATURES if matches(data)), None)
    if name is not None:
        return _CODEC_FORMATS.get(name, f"a {name} stream")
    return next((text for text, matches in _OTHER_FORMATS if matches(data)), None)


def not_icm_message(path, data: bytes) -> str:
    """Why ``icm info`` cannot show ``path`` (neither an .icm stream nor a standard codec's): what it is, and what
    reads it."""
    what = describe(data)
    if what is None:
        return (
            f"{path}: not an .icm stream (unrecognised contents); icm info reads .icm streams and standard codecs' "
            "streams"
        )
    hint = f"icm decompress {path} decodes it" if sniff_codec(data) else f"icm compress {path} makes one"
    if what.endswith(" image"):
        hint += f", icm predict {path} classifies it"
    return f"{path}: {what}, not a stream; icm info reads .icm streams and standard codecs' streams ({hint})"


def not_a_stream_message(path, data: bytes, how_to_name: str = "--codec NAME") -> str:
    """Why ``path`` cannot be decompressed: no codec's signature. Says what it is when that is known."""
    what = describe(data)
    if what is None:
        return f"{path}: unrecognised stream: not .icm and no known image signature (pass {how_to_name})"
    return (
        f"{path}: {what}, not a compressed stream of a codec icmkit decodes (icm codecs lists them); "
        f"icm compress {path} compresses it"
    )
