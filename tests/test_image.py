import io

import numpy as np
import pytest
from PIL import Image

from icmkit.errors import InputImageError
from icmkit.image import IcmWarning, load_rgb

from conftest import synthetic_photo


def _png(img: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def test_rgb_png_round_trips(photo):
    assert np.array_equal(load_rgb(_png(Image.fromarray(photo))), photo)


def test_grayscale_becomes_rgb():
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    out = load_rgb(_png(gray))
    assert out.shape == (8, 8, 3) and np.array_equal(out[..., 0], out[..., 2])


def test_palette_becomes_rgb(photo):
    out = load_rgb(_png(Image.fromarray(photo).convert("P")))
    assert out.shape == photo.shape


def test_alpha_is_dropped_with_a_warning(photo):
    rgba = Image.fromarray(photo).convert("RGBA")
    with pytest.warns(IcmWarning, match="alpha"):
        out = load_rgb(_png(rgba))
    assert np.array_equal(out, photo)


def test_sixteen_bit_is_rounded_with_a_warning():
    array = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000
    with pytest.warns(IcmWarning, match="8 bits"):
        out = load_rgb(_png(Image.fromarray(array)))
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    assert out[3, 3, 0] == round(60000 * 255 / 65535)


@pytest.mark.parametrize("encode", ["png", "tiff"])
@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_is_rounded_not_truncated(encode, channels):
    import imagecodecs

    rng = np.random.default_rng(0)
    samples = rng.integers(0, 65536, (6, 7, channels), dtype=np.uint16)
    samples[0, 0, 0] = 0x12FF  # the high byte alone would give 0x12 = 18, rounding gives 19
    data = getattr(imagecodecs, f"{encode}_encode")(samples)
    with pytest.warns(IcmWarning) as caught:
        out = load_rgb(data)
    expected = np.round(samples[..., :3].astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(out, expected) and out[0, 0, 0] == 19
    messages = [str(w.message) for w in caught]
    assert any("16-bit" in m for m in messages) and any("alpha" in m for m in messages) == (channels == 4)


def test_sixteen_bit_ppm_warns():
    samples = np.full((3, 4, 3), 65535, dtype=np.uint16)
    with pytest.warns(IcmWarning, match="16-bit"):
        out = load_rgb(b"P6 4 3 65535\n" + samples.astype(">u2").tobytes())
    assert np.array_equal(out, np.full((3, 4, 3), 255, np.uint8))


def test_sixteen_bit_keeps_exif_orientation():
    import imagecodecs

    png = imagecodecs.png_encode(np.zeros((4, 10, 3), dtype=np.uint16))
    assert Image.open(io.BytesIO(png)).mode == "RGB"  # Pillow holds it as 8 bits: icmkit re-decodes the samples
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    # Pillow writes an eXIf chunk only for 8-bit images: copy one into the 16-bit file before its IEND.
    with_exif = io.BytesIO()
    Image.fromarray(np.zeros((4, 10, 3), np.uint8)).save(with_exif, format="PNG", exif=exif)
    chunk = with_exif.getvalue()
    start = chunk.index(b"eXIf") - 4
    length = int.from_bytes(chunk[start : start + 4], "big")
    exif_chunk = chunk[start : start + 12 + length]
    iend = png.index(b"IEND") - 4
    with pytest.warns(IcmWarning, match="16-bit"):
        out = load_rgb(png[:iend] + exif_chunk + png[iend:])
    assert out.shape == (10, 4, 3)


def test_exif_orientation_is_applied():
    array = synthetic_photo(10, 20)
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif, quality=95)
    assert load_rgb(buffer.getvalue()).shape == (20, 10, 3)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"])
def test_garbage_is_refused(data):
    with pytest.raises(InputImageError):
        load_rgb(data)


def test_truncated_image_is_refused(photo):
    data = _png(Image.fromarray(photo))
    with pytest.raises(InputImageError):
        load_rgb(data[: len(data) // 2])


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(InputImageError, match="no such file"):
        load_rgb(tmp_path / "missing.png")
    with pytest.raises(InputImageError, match="directory"):
        load_rgb(tmp_path)


def test_pixel_limit_is_checked_before_decoding(photo, monkeypatch):
    data = _png(Image.fromarray(photo))
    monkeypatch.setenv("ICM_MAX_PIXELS", str(photo.shape[0] * photo.shape[1] - 1))
    with pytest.raises(InputImageError, match="exceeds the limit"):
        load_rgb(data)
