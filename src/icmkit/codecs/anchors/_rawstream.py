"""The tiny container of the raw-stream anchors (``hevc444``, ``vvc``), so bytes count as BPG's would.

Layout::

    magic      3 bytes  b"icR"
    format     1 byte   high nibble: stream kind (1 = HEVC YCbCr 4:4:4, 2 = VVC YCbCr 4:2:0),
                        low nibble: bit depth - 8
    width      LEB128   the image's width in pixels, before the padding the codec adds
    height     LEB128   likewise
    length     LEB128   byte length of the Annex-B stream that follows
    stream     Annex-B  the codec's elementary stream, untouched

Like BPG's ``picture_data_length`` the length field is what lets a truncated file be told from a
complete one: video decoders conceal a cut-off slice silently. The header costs 8 bytes on a
96×80 image and 10–11 bytes on a 768×512 one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from icmkit.errors import BitstreamError
from icmkit.limits import check_declared_size
from icmkit.varint import VarintError, decode_uv, encode_uv

MAGIC = b"icR"
MAX_SIDE = 16384  # beyond HEVC/VVC level 6.2 pictures; larger values can only be corrupt
_MAX_VARINT_BYTES = 4  # 2**28 - 1 covers every side and every stream we accept


class StreamKind(enum.IntEnum):
    """The elementary stream a raw-stream container holds: the high nibble of its format byte."""

    HEVC_444 = 1
    VVC_420 = 2

    @property
    def label(self) -> str:
        codec, chroma = self.name.split("_")
        return f"{codec} {chroma[0]}:{chroma[1]}:{chroma[2]}"


@dataclass(frozen=True)
class RawHeader:
    """The fields of a raw-stream container's header (the length is implied by the stream it is packed with)."""

    kind: StreamKind
    bit_depth: int
    width: int
    height: int


def _leb128(value: int) -> bytes:
    return encode_uv(value, _MAX_VARINT_BYTES)


def _read_leb128(data: bytes, pos: int, what: str, codec: str) -> tuple[int, int]:
    try:
        return decode_uv(data, pos, _MAX_VARINT_BYTES)
    except VarintError as exc:
        if exc.truncated:
            raise BitstreamError(f"{codec}: truncated raw-stream header (in the {what})") from None
        raise BitstreamError(f"{codec}: corrupt raw-stream header ({what} too long or overlong)") from None


def pack(header: RawHeader, stream: bytes) -> bytes:
    if not 8 <= header.bit_depth <= 23:
        raise ValueError(f"bit depth {header.bit_depth} does not fit the format byte")
    fmt = (int(header.kind) << 4) | (header.bit_depth - 8)
    return b"".join((MAGIC, bytes([fmt]), _leb128(header.width), _leb128(header.height), _leb128(len(stream)), stream))


def read_header(data: bytes, codec: str) -> tuple[RawHeader, int, int]:
    """The header of a raw stream of any kind and depth: (header, declared stream length, where the stream starts);
    sizes are checked, the kind and depth are the caller's to check (``icm info`` reads any)."""
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(f"{codec}: not an icmkit raw stream (bad magic)")
    if len(data) <= len(MAGIC):
        raise BitstreamError(f"{codec}: truncated raw-stream header")
    fmt = data[len(MAGIC)]
    pos = len(MAGIC) + 1
    width, pos = _read_leb128(data, pos, "width", codec)
    height, pos = _read_leb128(data, pos, "height", codec)
    length, pos = _read_leb128(data, pos, "stream length", codec)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise BitstreamError(f"{codec}: raw stream declares a {width}×{height} image (sides must be 1…{MAX_SIDE})")
    check_declared_size(width, height, codec)
    return RawHeader(fmt >> 4, (fmt & 0x0F) + 8, width, height), length, pos


def unpack(data: bytes, kind: StreamKind, bit_depth: int, codec: str) -> tuple[RawHeader, bytes]:
    """Split ``data`` into its header and stream, refusing other kinds, sizes or lengths.

    ``codec`` names the caller in the one-line errors.
    """
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(f"{codec}: not an icmkit raw {kind.label} stream (bad magic)")
    if len(data) <= len(MAGIC):
        raise BitstreamError(f"{codec}: truncated raw-stream header")
    fmt = data[len(MAGIC)]
    found_kind, found_depth = fmt >> 4, (fmt & 0x0F) + 8
    if found_kind != kind:
        known = {k.value: k.label for k in StreamKind}
        other = known.get(found_kind, f"unknown kind {found_kind}")
        raise BitstreamError(f"{codec}: raw stream holds {other}, not {kind.label}")
    if found_depth != bit_depth:
        raise BitstreamError(f"{codec}: raw {kind.label} stream of bit depth {found_depth}, expected {bit_depth}")
    header, length, pos = read_header(data, codec)
    stream = data[pos:]
    if not length:
        raise BitstreamError(f"{codec}: raw {kind.label} stream is empty")
    if len(stream) < length:
        raise BitstreamError(f"{codec}: truncated raw {kind.label} stream ({len(stream)} of {length} bytes)")
    if len(stream) > length:
        raise BitstreamError(f"{codec}: {len(stream) - length} unexpected bytes after the raw {kind.label} stream")
    return RawHeader(kind, found_depth, header.width, header.height), stream
