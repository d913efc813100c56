"""Conventional anchor codecs: round trips, rate ordering, corrupt input, the raw-stream header."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from icmkit.codecs.anchors import ANCHOR_CODECS, _rawstream, vvc
from icmkit.codecs.anchors._ycbcr import planes_to_rgb, rgb_to_planes
from icmkit.codecs.base import Codec
from icmkit.errors import BitstreamError, CodecUnavailableError, InputImageError, QualityError

CODECS = [make() for make in ANCHOR_CODECS]
EXPECTED = ["jpeg", "jpeg444", "webp", "jpeg2000", "hevc444", "avif", "jxl", "vvc"]


def smooth_image(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [128 + 90 * np.sin(xx / 9 + k) * np.cos(yy / 11 + k / 2) for k in range(3)]
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def textured_image(height: int, width: int) -> np.ndarray:
    # Noise keeps every grid point off the floors and ceilings a tiny smooth image hits.
    noise = np.random.default_rng(0).normal(0, 12, (height, width, 3))
    return np.clip(smooth_image(height, width) + noise, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def usable(codec: Codec) -> Codec:
    state = codec.availability()
    if not state.ok:
        pytest.skip(f"{codec.name} unavailable: {state.reason}")
    return codec


by_name = pytest.mark.parametrize("codec", CODECS, ids=[c.name for c in CODECS])


def test_order_and_metadata() -> None:
    assert [c.name for c in CODECS] == EXPECTED
    extensions = {c.name: c.extension for c in CODECS}
    assert extensions == {
        "jpeg": ".jpg", "jpeg444": ".jpg", "webp": ".webp", "jpeg2000": ".jp2",
        "hevc444": ".hevc", "avif": ".avif", "jxl": ".jxl", "vvc": ".vvc",
    }  # fmt: skip
    for codec in CODECS:
        doc = type(codec).__doc__ or ""
        assert "Knob" in doc and "grid" in doc, codec.name
        spec = codec.quality
        assert all(spec.lo <= q <= spec.hi for q in spec.grid)
        step = 1 if spec.rate_increases else -1
        assert list(spec.grid) == sorted(spec.grid)[::step], codec.name
        assert codec.description


def test_import_loads_no_optional_library() -> None:
    optional = "{'av', 'imagecodecs', 'pillow_heif', 'imageio_ffmpeg'}"
    probe = f"import sys, icmkit.codecs.anchors; print(sorted({optional} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@by_name
@pytest.mark.parametrize("shape", [(80, 96), (47, 63)], ids=["96x80", "63x47"])
def test_round_trip(codec: Codec, shape: tuple[int, int]) -> None:
    usable(codec)
    image = smooth_image(*shape)
    data = codec.encode(image)
    decoded = codec.decode(data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert psnr(image, decoded) > 30, (codec.name, psnr(image, decoded))
    assert len(data) * 8 / (shape[0] * shape[1]) < 4  # well below the 24 bpp of raw RGB


@by_name
def test_rate_grows_along_grid(codec: Codec) -> None:
    usable(codec)
    image = textured_image(80, 96)
    grid = codec.quality.grid
    points = [grid[1], grid[len(grid) // 2], grid[-2]]
    sizes = [len(codec.encode(image, q)) for q in points]
    assert sizes[0] < sizes[1] < sizes[2], (codec.name, points, sizes)


@by_name
def test_corrupt_streams_raise_bitstream_error(codec: Codec) -> None:
    usable(codec)
    data = codec.encode(smooth_image(48, 64))
    garbage = np.random.default_rng(7).bytes(400)
    for bad in (b"", garbage, data[:8], data[: len(data) // 2], data[:-1]):
        with pytest.raises(BitstreamError) as info:
            codec.decode(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(BitstreamError):
        codec.decode("not bytes")  # type: ignore[arg-type]


@by_name
def test_input_and_quality_are_checked(codec: Codec) -> None:
    with pytest.raises(InputImageError):
        codec.encode(np.zeros((8, 8), np.uint8))
    with pytest.raises(QualityError):
        codec.encode(smooth_image(16, 16), codec.quality.hi + 1)


def test_hevc_stream_is_raw_annexb_behind_a_tiny_header() -> None:
    codec = usable(CODECS[EXPECTED.index("hevc444")])
    data = codec.encode(smooth_image(80, 96), 32)
    header, stream = _rawstream.unpack(data, _rawstream.StreamKind.HEVC_444, 8, "hevc444")
    assert (header.width, header.height) == (96, 80)
    assert stream.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
    assert len(data) - len(stream) < 16
    assert b"x265" not in stream  # info SEI (encoder version and options) is off, as in BPG


def test_raw_streams_of_one_kind_are_refused_by_the_other() -> None:
    hevc = usable(CODECS[EXPECTED.index("hevc444")])
    data = hevc.encode(smooth_image(16, 16), 40)
    with pytest.raises(BitstreamError, match="HEVC 4:4:4"):
        CODECS[EXPECTED.index("vvc")].decode(data)


def test_raw_header_round_trip_and_limits() -> None:
    kind = _rawstream.StreamKind.VVC_420
    packed = _rawstream.pack(_rawstream.RawHeader(kind, 10, 16383, 129), b"\x00\x00\x01xyz")
    header, stream = _rawstream.unpack(packed, kind, 10, "t")
    assert (header.width, header.height, stream) == (16383, 129, b"\x00\x00\x01xyz")
    assert len(packed) - len(stream) == 3 + 1 + 2 + 2 + 1
    huge = _rawstream.pack(_rawstream.RawHeader(kind, 10, 10**6, 1), b"x")
    with pytest.raises(BitstreamError, match="sides"):
        _rawstream.unpack(huge, kind, 10, "t")
    with pytest.raises(BitstreamError, match="bit depth"):
        _rawstream.unpack(packed, kind, 8, "t")
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        _rawstream.unpack(packed + b"\x00", kind, 10, "t")


def test_ycbcr_conversion_inverts_up_to_rounding() -> None:
    image = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    for depth, tolerance in ((8, 2), (10, 1)):
        back = planes_to_rgb(rgb_to_planes(image, depth, subsample=False), depth)
        assert np.abs(back.astype(int) - image).max() <= tolerance
    grey = np.repeat(image[..., :1], 3, axis=2)  # no chroma: 4:2:0 loses nothing
    planes = rgb_to_planes(grey, 10, subsample=True)
    assert planes[1].shape == (16, 24) and planes[1].dtype == np.uint16
    assert np.abs(planes_to_rgb(planes, 10).astype(int) - grey).max() <= 1


def test_vvc_reports_why_it_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vvc, "_ffmpeg_with_vvenc", lambda: None)
    codec = vvc.VvcCodec()
    state = codec.availability()
    assert not state.ok and "pip install 'icmkit[vvc]'" in state.reason
    with pytest.raises(CodecUnavailableError, match="vvc"):
        codec.encode(smooth_image(16, 16))


def test_vvc_round_trip_or_reason() -> None:
    codec = CODECS[EXPECTED.index("vvc")]
    state = codec.availability()
    if not state.ok:
        assert state.reason
        pytest.skip(f"vvc unavailable: {state.reason}")
    image = smooth_image(47, 63)
    data = codec.encode(image, 32)
    header, stream = _rawstream.unpack(data, _rawstream.StreamKind.VVC_420, 10, "vvc")
    assert len(data) - len(stream) < 16
    decoded = codec.decode(data)
    assert decoded.shape == image.shape and psnr(image, decoded) > 30


@pytest.mark.parametrize("shape", [(1, 5), (8, 8), (37, 101), (64, 96), (300, 200)])
def test_jxl_size_is_read_from_the_header_of_bare_and_contained_streams(shape) -> None:
    from icmkit.codecs.anchors._jxlsize import CONTAINER, declared_size

    codec = usable(CODECS[EXPECTED.index("jxl")])
    data = codec.encode(textured_image(*shape), 50)
    assert declared_size(data) == shape[::-1]
    boxed = (
        CONTAINER
        + b"\x00\x00\x00\x14ftypjxl \x00\x00\x00\x00jxl "
        + (8 + len(data)).to_bytes(4, "big")
        + b"jxlc"
        + data
    )
    assert declared_size(boxed) == shape[::-1]
    assert codec.decode(boxed).shape == (*shape, 3)
    for bad in (CONTAINER + b"\x00\x00\x00\x04ftyp", CONTAINER, b"\xff\x0a"):
        with pytest.raises(BitstreamError):
            codec.decode(bad)


def test_raw_header_refuses_overlong_varints() -> None:
    kind = _rawstream.StreamKind.HEVC_444
    packed = _rawstream.pack(_rawstream.RawHeader(kind, 8, 16, 16), b"\x00\x00\x01x")
    overlong = packed[:4] + b"\x90\x00" + packed[5:]  # width 16 in two bytes: not what pack writes
    with pytest.raises(BitstreamError, match="too long"):
        _rawstream.unpack(overlong, kind, 8, "t")
