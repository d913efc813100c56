import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icmkit import bitstream
from icmkit.errors import BitstreamError

HEADER = bitstream.IcmHeader(
    codec="icm-mse", quality=3, digest=bytes(range(8)), width=768, height=512, pad_bottom=0, pad_right=0
)
STREAMS = [b"\x01\x02\x03", b"\xff" * 5]


def packed() -> bytes:
    return bitstream.pack(HEADER, STREAMS)


def test_round_trip():
    header, streams = bitstream.unpack(packed())
    assert streams == STREAMS
    assert (header.codec, header.quality, header.digest) == ("icm-mse", 3, bytes(range(8)))
    assert (header.width, header.height, header.kind, header.stream_lengths) == (768, 512, "pixel", (3, 5))


def test_golden_layout():
    # Catches accidental format changes: update only together with FORMAT_VERSION.
    body = (
        b"\x89ICM"
        + b"\x01\x00"
        + b"\x07icm-mse"
        + b"\x03"
        + bytes(range(8))
        + b"\x80\x06"
        + b"\x80\x04"
        + b"\x03"
        + b"\x00\x00"
        + b"\x00"
        + b"\x02\x03\x05"
        + b"\x01\x02\x03"
        + b"\xff" * 5
    )
    assert packed() == body + struct.pack("<I", zlib.crc32(body))


def test_feature_kind_and_extra_round_trip():
    header = bitstream.IcmHeader(
        codec="dicm", quality=1, digest=b"\0" * 8, width=5, height=7, kind="feature", extra=b"backbone=r50"
    )
    parsed, _ = bitstream.unpack(bitstream.pack(header, [b"x"]))
    assert parsed.kind == "feature" and parsed.extra == b"backbone=r50"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "bad magic"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "bad magic"),
        (b"\x89ICM", "truncated"),
    ],
)
def test_refuses_foreign_and_short(data, message):
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(data)


def test_refuses_future_version():
    data = bytearray(packed())
    data[4] = 2
    with pytest.raises(BitstreamError, match="newer"):
        bitstream.unpack(bytes(data))


def test_pixel_limit_checked_from_header():
    with pytest.raises(BitstreamError, match="over the limit"):
        bitstream.unpack(packed(), max_pixels=768 * 512 - 1)
    bitstream.unpack(packed(), max_pixels=768 * 512)


def test_huge_declared_dimensions_refused_before_allocation():
    header = bitstream.IcmHeader(codec="icm-mse", quality=1, digest=b"\0" * 8, width=2**34, height=2**34)
    with pytest.raises(BitstreamError, match="over the limit"):
        bitstream.unpack(bitstream.pack(header, [b""]), max_pixels=1 << 28)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_every_single_bit_flip_is_detected(position, bit):
    data = bytearray(packed())
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(BitstreamError):
        bitstream.unpack(bytes(data))


def test_every_truncation_is_detected():
    data = packed()
    for end in range(len(data)):
        with pytest.raises(BitstreamError):
            bitstream.unpack(data[:end])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_bitstream_errors(data):
    with pytest.raises(BitstreamError):
        bitstream.unpack(data)


def _refused_or_exact(data: bytes, max_pixels: int) -> bool:
    """A reader either refuses a stream or describes it exactly: ``pack(*unpack(data)) == data``."""
    try:
        header, streams = bitstream.unpack(data, max_pixels=max_pixels)
    except BitstreamError:
        return False
    assert header.width * header.height <= max_pixels
    assert bitstream.pack(header, streams) == data
    return True


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_valid_crc_with_garbage_body_is_refused_or_read_exactly(body):
    _refused_or_exact(_with_crc(b"\x89ICM\x01" + body), max_pixels=1 << 20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(5, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_edited_header_fields_with_valid_crc_are_refused_or_read_exactly(edits):
    body = bytearray(packed()[:-4])
    for position, value in edits:
        body[5 + position % (len(body) - 5)] = value
    _refused_or_exact(_with_crc(bytes(body)), max_pixels=1 << 20)


@pytest.mark.parametrize(
    "body, message",
    [
        # What pack() cannot write is refused, so that an accepted stream has one byte form.
        (b"\x89ICM\x01\x00\x00\x01" + bytes(8) + b"\x01\x01\x03\x00\x00\x00\x01\x00", "empty codec name"),
        (b"\x89ICM\x01\x00\x01x\x00", "quality id 0"),
        (b"\x89ICM\x01\x00\x01x\x01" + bytes(8) + b"\x81\x00", "overlong"),  # width 1 in two bytes
        (b"\x89ICM\x01\x00\x01x\x01" + bytes(8) + b"\x01\x01\x03\x00\x00\x00\x00", "0 streams"),
        (b"\x89ICM\x01\x00\x01x\x01" + bytes(8) + b"\x01\x01\x03\x00\x00\x00\x01\x05ab", "do not match"),
    ],
)
def test_fields_pack_cannot_write_are_refused(body, message):
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(_with_crc(body))
    assert not _refused_or_exact(_with_crc(body), max_pixels=1 << 20)


def test_an_accepted_edit_is_read_exactly():
    body = bytearray(packed()[:-4])
    body[body.index(b"\x80\x06")] = 0x81  # width 768 → 769: a valid header of another size
    assert _refused_or_exact(_with_crc(bytes(body)), max_pixels=1 << 20)
