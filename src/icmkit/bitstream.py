"""The ``.icm`` container, format version 1: one file = one coded image (or feature set).

Layout (integers little-endian; ``uv`` = unsigned LEB128 varint, at most 5 bytes)::

    magic        4   b"\\x89ICM"  (high bit set: catches 7-bit channels, as PNG does)
    version      1   format version (1)
    kind         1   0 = pixel codec, 1 = feature codec
    codec        1+n length-prefixed ASCII codec name, e.g. "icm-mse"
    quality      1   quality id within the codec (1…255)
    digest       8   first 8 bytes of SHA-256 of the weights that wrote it
    width        uv  original width in pixels
    height       uv  original height
    channels     1   original channel count coded (3)
    pad_bottom   uv  rows added before coding (the decoder crops them)
    pad_right    uv  columns added before coding
    extra        uv + bytes   codec-specific header: key/value pairs (see :func:`pack_extra`), empty for pixel codecs
    streams      1   number of entropy-coded streams
    lengths      uv × streams
    payload      the streams, concatenated
    crc32        4   CRC-32 (zlib) of every byte before it

Every byte is counted in the rate. Readers refuse a foreign magic, a newer version, a CRC mismatch,
inconsistent lengths and dimensions beyond the pixel limit — before allocating anything image-sized —
and every field :func:`pack` cannot write (empty codec name, quality 0, overlong varints), so a stream
:func:`unpack` accepts is exactly ``pack(*unpack(stream))``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, replace

from icmkit.digest import DIGEST_BYTES
from icmkit.errors import BitstreamError
from icmkit.limits import check_declared_size
from icmkit.varint import VarintError, decode_uv, encode_uv

MAGIC = b"\x89ICM"
FORMAT_VERSION = 1
KINDS = ("pixel", "feature")
MAX_STREAMS = 16
_MAX_VARINT_BYTES = 5


@dataclass(frozen=True)
class IcmHeader:
    """The header fields of one ``.icm`` stream (see the module's layout): what :func:`pack` writes.

    :func:`unpack` returns one for every stream it accepts.
    """

    codec: str
    quality: int
    digest: bytes
    width: int
    height: int
    kind: str = "pixel"
    channels: int = 3
    pad_bottom: int = 0
    pad_right: int = 0
    extra: bytes = b""
    stream_lengths: tuple[int, ...] = field(default=())
    version: int = FORMAT_VERSION


def _uv(value: int) -> bytes:
    return encode_uv(value, _MAX_VARINT_BYTES)


def pack(header: IcmHeader, streams: list[bytes]) -> bytes:
    name = header.codec.encode("ascii")
    if not 0 < len(name) < 256:
        raise ValueError("codec name must be 1…255 ASCII bytes")
    if not 1 <= header.quality <= 255:
        raise ValueError("quality id must be 1…255")
    if len(header.digest) != DIGEST_BYTES:
        raise ValueError(f"digest must be {DIGEST_BYTES} bytes")
    if not 0 < len(streams) <= MAX_STREAMS:
        raise ValueError("1…16 streams")
    out = bytearray(MAGIC)
    out += bytes([FORMAT_VERSION, KINDS.index(header.kind), len(name)]) + name
    out += bytes([header.quality]) + header.digest
    out += _uv(header.width) + _uv(header.height) + bytes([header.channels])
    out += _uv(header.pad_bottom) + _uv(header.pad_right)
    out += _uv(len(header.extra)) + header.extra
    out += bytes([len(streams)]) + b"".join(_uv(len(s)) for s in streams)
    out += b"".join(streams)
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > len(self.data):
            raise BitstreamError(f"truncated .icm stream (ends inside the {what})")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def uv(self, what: str) -> int:
        try:
            value, self.pos = decode_uv(self.data, self.pos, _MAX_VARINT_BYTES)
        except VarintError as exc:
            if exc.truncated:
                raise BitstreamError(f"truncated .icm stream (ends inside the {what})") from None
            raise BitstreamError(f"malformed .icm header ({what} varint too long or overlong)") from None
        return value


def peek_is_icm(data: bytes) -> bool:
    return data[:4] == MAGIC


def read_codec_name(data: bytes) -> str | None:
    """The codec name of an .icm stream's header, without verifying the rest (for dispatch only)."""
    if len(data) < 8 or not peek_is_icm(data):
        return None
    end = 7 + data[6]
    try:
        return data[7:end].decode("ascii") if len(data) >= end else None
    except UnicodeDecodeError:
        return None


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[IcmHeader, list[bytes]]:
    """Parse and verify a stream; ``max_pixels`` refuses oversized dimensions before any allocation."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not an .icm stream (bad magic bytes)")
    if len(data) < 6:
        raise BitstreamError("truncated .icm stream")
    if data[4] != FORMAT_VERSION:
        if data[4] > FORMAT_VERSION:
            raise BitstreamError(
                f".icm format version {data[4]} is newer than this icmkit reads (version {FORMAT_VERSION}); "
                "upgrade icmkit"
            )
        raise BitstreamError(f"unknown .icm format version {data[4]}")
    if len(data) < 10:
        raise BitstreamError("truncated .icm stream")
    (stored_crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != stored_crc:
        raise BitstreamError(".icm stream is corrupt or truncated (CRC-32 mismatch)")
    reader = _Reader(data[:-4])
    reader.take(5, "magic")
    kind_id = reader.byte("kind")
    if kind_id >= len(KINDS):
        raise BitstreamError(f"unknown codec kind {kind_id} in .icm header")
    name_len = reader.byte("codec name")
    try:
        codec = reader.take(name_len, "codec name").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("malformed .icm header (codec name is not ASCII)") from None
    if not codec:
        raise BitstreamError("malformed .icm header (empty codec name)")
    quality = reader.byte("quality")
    if quality == 0:
        raise BitstreamError("malformed .icm header (quality id 0)")
    digest = reader.take(DIGEST_BYTES, "weights digest")
    width, height = reader.uv("width"), reader.uv("height")
    channels = reader.byte("channels")
    if width < 1 or height < 1 or channels != 3:
        raise BitstreamError(f"malformed .icm header ({width}×{height}×{channels})")
    if max_pixels is not None:
        check_declared_size(width, height, ".icm header", limit=max_pixels)
    pad_bottom, pad_right = reader.uv("padding"), reader.uv("padding")
    if pad_bottom > 4096 or pad_right > 4096:
        raise BitstreamError("malformed .icm header (padding too large)")
    extra = reader.take(reader.uv("extra length"), "extra header")
    count = reader.byte("stream count")
    if not 0 < count <= MAX_STREAMS:
        raise BitstreamError(f"malformed .icm header ({count} streams)")
    lengths = tuple(reader.uv("stream length") for _ in range(count))
    payload = reader.data[reader.pos :]
    if sum(lengths) != len(payload):
        raise BitstreamError(".icm stream lengths do not match its payload (corrupt or truncated)")
    streams, pos = [], 0
    for length in lengths:
        streams.append(payload[pos : pos + length])
        pos += length
    header = IcmHeader(
        codec=codec,
        quality=quality,
        digest=digest,
        width=width,
        height=height,
        kind=KINDS[kind_id],
        channels=channels,
        pad_bottom=pad_bottom,
        pad_right=pad_right,
        extra=extra,
        stream_lengths=lengths,
    )
    return header, streams


MAX_EXTRA_ITEMS = 32
_MAX_EXTRA_TEXT = 255


def pack_extra(items: dict[str, bytes | str]) -> bytes:
    """The ``extra`` field's layout: a count byte, then per item ``len key`` (1 byte) + ASCII key and
    ``len value`` (1 byte) + value bytes (``str`` values are UTF-8), keys in sorted order (equal dicts
    give equal bytes). Keys are short on purpose: every header byte counts in the rate."""
    if len(items) > MAX_EXTRA_ITEMS:
        raise ValueError(f"at most {MAX_EXTRA_ITEMS} extra header items")
    out = bytearray([len(items)])
    for key in sorted(items):
        value = items[key]
        k, v = key.encode("ascii"), value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if not 0 < len(k) <= _MAX_EXTRA_TEXT or len(v) > _MAX_EXTRA_TEXT:
            raise ValueError("extra header keys must be 1…255 bytes and values at most 255")
        out += bytes([len(k)]) + k + bytes([len(v)]) + v
    return bytes(out)


def unpack_extra(extra: bytes) -> dict[str, bytes]:
    """Inverse of :func:`pack_extra` (values as bytes); a malformed field is a :class:`BitstreamError`."""
    reader = _Reader(extra)
    items: dict[str, bytes] = {}
    for _ in range(reader.byte("extra header")):
        try:
            key = reader.take(reader.byte("extra header"), "extra header").decode("ascii")
        except UnicodeDecodeError:
            raise BitstreamError("malformed .icm extra header (key is not ASCII)") from None
        if key in items or not key:
            raise BitstreamError("malformed .icm extra header (empty or repeated key)")
        items[key] = reader.take(reader.byte("extra header"), "extra header")
    if reader.pos != len(extra):
        raise BitstreamError("malformed .icm extra header (trailing bytes)")
    return items


# The rate-control record (``extra`` key ``r``): what a ``--target-…`` / ``--keep-prediction`` search aimed at and,
# for fidelity and decision targets, what it achieved — e.g. ``psnr>=36;36.41 dB``. The chosen quality is the
# header's own; a size target's achieved size is the file's.
RECORD_KEY = "r"


def with_record(data: bytes, record: str) -> bytes:
    """The same stream with ``record`` in its ``extra`` field (the CRC recomputed); ``extra`` must be empty or
    key/value items (:func:`pack_extra`)."""
    header, streams = unpack(data)
    items = unpack_extra(header.extra) if header.extra else {}
    items[RECORD_KEY] = record.encode("utf-8")[:_MAX_EXTRA_TEXT]
    return pack(replace(header, extra=pack_extra(items)), streams)


def read_record(header: IcmHeader) -> str | None:
    """The rate-control record of a header, if it has one (None for a malformed or foreign ``extra``)."""
    if not header.extra:
        return None
    try:
        value = unpack_extra(header.extra).get(RECORD_KEY)
    except BitstreamError:
        return None
    return value.decode("utf-8", "replace") if value is not None else None


def split_record(extra: bytes) -> dict[str, bytes]:
    """``extra``'s items without the rate-control record (what a codec checks as its own fields)."""
    items = unpack_extra(extra) if extra else {}
    items.pop(RECORD_KEY, None)
    return items
