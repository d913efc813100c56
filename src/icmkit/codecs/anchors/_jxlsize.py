"""The picture size a JPEG XL stream declares, read from its SizeHeader before anything is decoded.

libjxl allocates whatever the header asks for, so :class:`~icmkit.codecs.anchors.jxl.JxlCodec` checks
the size against the pixel limit first (ISO/IEC 18181-1, SizeHeader: bits are read LSB first).
"""

from __future__ import annotations

import struct

CODESTREAM = b"\xff\x0a"
CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


class _Bits:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def u(self, count: int) -> int:
        value = 0
        for i in range(count):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("JPEG XL size header is truncated")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return value

    def size(self, div8: bool) -> int:
        if div8:
            return (self.u(5) + 1) * 8
        return self.u((9, 13, 18, 30)[self.u(2)]) + 1


def codestream(data: bytes) -> bytes:
    """The bare codestream: ``data`` itself, or the first ``jxlc`` / ``jxlp`` box of a container."""
    if data[:2] == CODESTREAM:
        return data
    if data[: len(CONTAINER)] != CONTAINER:
        raise ValueError("not a JPEG XL stream (bad signature)")
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                break
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            raise ValueError("JPEG XL container has a malformed box")
        payload = data[pos + header : pos + size]
        if kind == b"jxlc":
            return payload
        if kind == b"jxlp":
            return payload[4:]  # a 4-byte part index, then the codestream's first part
        pos += size
    raise ValueError("JPEG XL container holds no codestream")


def declared_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the SizeHeader; ValueError when the stream does not start like JPEG XL."""
    stream = codestream(data)
    if stream[:2] != CODESTREAM:
        raise ValueError("not a JPEG XL codestream (bad signature)")
    bits = _Bits(stream[2:18])
    div8 = bool(bits.u(1))
    height = bits.size(div8)
    ratio = bits.u(3)
    if ratio:
        numerator, denominator = _RATIOS[ratio]
        return height * numerator // denominator, height
    return bits.size(div8), height
