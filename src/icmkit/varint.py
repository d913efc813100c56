"""Unsigned LEB128 varints, the integer encoding of icmkit's small stream headers."""

from __future__ import annotations


class VarintError(ValueError):
    """A varint that cannot be read; callers turn it into their own header error.

    Args:
        truncated: True when the data ended inside the varint, False when it ran too long or was overlong
            (padded with zero groups: only the shortest encoding is valid, so every value has one form).
            Kept as the attribute ``truncated``.
    """

    def __init__(self, truncated: bool):
        super().__init__("truncated varint" if truncated else "varint too long")
        self.truncated = truncated


def encode_uv(value: int, max_bytes: int = 5) -> bytes:
    if value < 0 or value >= 1 << (7 * max_bytes):
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_uv(data: bytes, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """Read one varint at ``pos``; return ``(value, position after it)``."""
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise VarintError(truncated=True)
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:  # an overlong encoding: writers never make one, so it is corrupt
                raise VarintError(truncated=False)
            return value, pos + i + 1
    raise VarintError(truncated=False)
