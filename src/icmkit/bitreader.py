"""An MSB-first bit reader with Exp-Golomb codes: the few header fields icmkit reads from AV1 and HEVC streams.

Written here because no maintained Python library parses HEVC parameter sets and slice headers (``bitstring``
reads bits but knows no syntax; FFmpeg parses them but does not expose the fields), and the fields needed are few.
Reading past the end raises :class:`IndexError`: the callers turn it into their own "truncated header" error.
"""

from __future__ import annotations


class BitReader:
    """Reads bits MSB first from a byte string, and the Exp-Golomb codes of HEVC and AV1 headers.

    Args:
        data: The bytes to read: an HEVC RBSP (emulation prevention bytes removed) or an AV1 OBU payload.
    """

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self.data[self.pos >> 3]  # IndexError past the end: a truncated header
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def skip(self, count: int) -> None:
        if (self.pos + count + 7) >> 3 > len(self.data):
            raise IndexError("read past the end")
        self.pos += count

    def ue(self) -> int:
        """Unsigned Exp-Golomb (HEVC's ue(v); AV1's uvlc() is the same code)."""
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros >= 32:
                raise ValueError("Exp-Golomb code too long")
        return self.read(zeros) + (1 << zeros) - 1

    def se(self) -> int:
        """Signed Exp-Golomb (HEVC's se(v)): 0, 1, −1, 2, −2, …"""
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)
