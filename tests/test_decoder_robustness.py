"""Regression tests of the decoder failures found by hand and by benchmarks/fuzz.py: each builds its
concrete hostile bytes and checks the decoder ends in an output of the declared size or one IcmError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import icmkit
from icmkit import bitstream
from icmkit.codecs import get_codec
from icmkit.codecs.anchors import _rawstream
from icmkit.errors import BitstreamError, IcmError, UnknownCodecError
from icmkit.feature_io import FeatureFileError, load_features

from conftest import synthetic_photo

GOLDEN_MSE = Path(__file__).parent / "data" / "golden" / "icm-mse-q4.icm"


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _payload_edit(data: bytes, offset: int, value: int) -> bytes:
    """Set one byte of the payload (``offset`` from its start) and recompute the CRC, as an attacker would."""
    header, _ = bitstream.unpack(data)
    body = bytearray(data[:-4])
    body[len(body) - sum(header.stream_lengths) + offset] = value
    return _with_crc(bytes(body))


def _outcomes_of_payload_edits(values=(0x00, 0xFF, 0x55, 0x80)) -> dict[str, bytes]:
    """Every one-byte payload edit of the golden stream (CRC recomputed, as an attacker would) → first stream
    per outcome: the error message, or "decoded"."""
    data = GOLDEN_MSE.read_bytes()
    header, _ = bitstream.unpack(data)
    outcomes: dict[str, bytes] = {}
    for offset in range(min(sum(header.stream_lengths), 64)):
        for value in values:
            edited = _payload_edit(data, offset, value)
            if edited == data:
                continue
            try:
                decoded = icmkit.decompress(edited)
            except BitstreamError as exc:
                outcomes.setdefault(str(exc), edited)
            else:
                assert decoded.shape == (80, 96, 3)  # whatever it decodes to has the declared size
                outcomes.setdefault("decoded", edited)
    return outcomes


def test_payload_edits_end_in_a_clean_error_or_the_declared_size():
    outcomes = _outcomes_of_payload_edits()
    # constriction's rejects (its InvalidData) and streams with data left over are mapped at the entropy boundary
    assert any("invalid for its probability tables" in m or "data left after its last symbol" in m for m in outcomes)
    assert "decoded" in outcomes
    assert all(m == "decoded" or "corrupt" in m or "invalid" in m or "malformed" in m for m in outcomes), outcomes


def test_pixel_stream_with_an_extra_header_is_refused():
    header, streams = bitstream.unpack(GOLDEN_MSE.read_bytes())
    data = bitstream.pack(bitstream.IcmHeader(**{**header.__dict__, "extra": b"\x00"}), streams)
    with pytest.raises(BitstreamError, match="unexpected extra header"):
        icmkit.decompress(data)


def test_sniffed_icm_of_an_unknown_or_foreign_codec_fails_cleanly():
    header, streams = bitstream.unpack(GOLDEN_MSE.read_bytes())
    for name, error in (("icm-nonexistent", UnknownCodecError), ("jpeg", BitstreamError)):
        data = bitstream.pack(bitstream.IcmHeader(**{**header.__dict__, "codec": name}), streams)
        with pytest.raises(error):
            icmkit.decompress(data)


def test_deeply_nested_features_header_is_a_feature_file_error():
    # json.loads raised RecursionError (not an IcmError) on a header of 50,000 "[".
    header = b"[" * 50_000
    with pytest.raises(FeatureFileError, match="nested too deeply"):
        load_features(len(header).to_bytes(8, "little") + header)


def test_jxl_declaring_more_pixels_than_the_limit_is_refused_before_decoding(monkeypatch):
    # SizeHeader: div8 = 1, height (31 + 1) · 8 = 256, ratio 7 (2:1): 512×256; the rest is garbage.
    monkeypatch.setenv("ICM_MAX_PIXELS", str(512 * 256 - 1))
    with pytest.raises(BitstreamError, match="over the limit"):
        get_codec("jxl").decode(b"\xff\x0a\xff\x01" + bytes(64))


def test_hevc_picture_larger_than_its_raw_header_is_refused():
    codec = get_codec("hevc444")
    data = codec.encode(synthetic_photo(256, 256), 47)
    header, stream = _rawstream.unpack(data, _rawstream.StreamKind.HEVC_444, 8, "hevc444")
    small = _rawstream.pack(_rawstream.RawHeader(header.kind, header.bit_depth, 16, 16), stream)
    # The decoder may allocate about what our header declares (16×16), not the 256×256 of the stream's SPS.
    with pytest.raises(BitstreamError, match="larger than its header declares"):
        codec.decode(small)


def test_no_context_feature_model_refuses_data_in_its_empty_second_stream():
    from icmkit.models import DICMFeatureModel

    torch.manual_seed(0)
    model = DICMFeatureModel(8, N=16, M=16, hyper=16, re_levels=0, context="none", block="conv", latent_levels=1).eval()
    model.update()
    coded = model.compress(torch.randn(1, 8, 16, 16))
    anchors, others, z = coded["strings"]
    assert others == [b""]
    assert model.decompress([anchors, others, z], coded["shape"])["f_hat"].shape == (1, 8, 16, 16)
    with pytest.raises(BitstreamError, match="without context"):
        model.decompress([anchors, [b"\x01"], z], coded["shape"])


@pytest.mark.parametrize("name", ["jpeg", "webp", "jpeg2000", "avif", "jxl", "hevc444"])
def test_anchor_decoders_fail_cleanly_on_truncation_and_garbage(name):
    codec = get_codec(name)
    if not codec.availability().ok:
        pytest.skip(codec.availability().reason)
    data = codec.encode(synthetic_photo(40, 56), codec.quality.default)
    rng = np.random.default_rng(0)
    hostile = [
        data[: len(data) // 2],
        data[:16],
        bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
        data[:8] + bytes(rng.integers(0, 256, len(data), dtype=np.uint8)),
    ]
    for stream in hostile:
        try:
            out = codec.decode(stream)
        except IcmError:
            continue
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
