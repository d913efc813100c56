"""Resource limits and the command line's boundary (issue 23): every hostile input below ends in one clean
error — an :class:`IcmError` from the API, one ``error:`` line and exit status 2 from ``icm`` — before the
cost it would have had, and never leaves a partial output. Each input is built here, small: the attack in
miniature, with the limit lowered where the real one is large."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hostile import animated_png, avif_with_small_ispe, features_file, jpeg_with_scans
from PIL import Image
from typer.testing import CliRunner

from icmkit import api, bitstream
from icmkit.codecs.anchors.pillow_codecs import JpegCodec
from icmkit.errors import (
    BitstreamError,
    IcmError,
    InputImageError,
    OutputError,
    OutputExistsError,
    ResourceLimitError,
)
from icmkit.feature_io import FeatureFileError, load_features
from icmkit.fileio import atomic_write, read_user_file
from icmkit.image import IcmWarning, load_rgb
from icmkit.limits import allowed_jpeg_scans, count_jpeg_scans, jpeg_frame_size, max_decode_memory, max_input_bytes

from conftest import synthetic_photo

_SCRIPT = Path(sys.executable).with_name("icm")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "icmkit"]


def icm_subprocess(*args, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def icm(*args, env: dict | None = None):
    """``icm`` in this process (typer's runner): quick, and able to patch what a command calls."""
    from icmkit.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def assert_one_error_line(result, fragment: str) -> None:
    stderr = result.stderr
    assert result.exit_code == 2 if hasattr(result, "exit_code") else result.returncode == 2, (stderr, result.stdout)
    assert "Traceback" not in stderr and "Traceback" not in result.stdout, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert fragment in stderr, stderr


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# -- 1. non-regular and oversized input files ---------------------------------------------------------------
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_without_reading(device):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    with pytest.raises(InputImageError, match="not a regular file"):
        api.read_stream_file(device)
    with pytest.raises(InputImageError, match="not a regular file"):
        load_rgb(device)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(read_user_file(fifo, 1000, InputImageError))
        except BaseException as exc:  # noqa: BLE001 — recorded for the assertion below
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # blocked in open() or read(): unblock it so the test process can finish
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], InputImageError) and "FIFO" in str(outcome[0])


def test_reads_stop_at_the_limit_whatever_the_size_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("ICM_MAX_INPUT_BYTES", "100")
    big = tmp_path / "big.icm"
    big.write_bytes(b"x" * 101)
    with pytest.raises(ResourceLimitError, match="ICM_MAX_INPUT_BYTES"):
        api.read_stream_file(big)
    big.write_bytes(b"x" * 100)
    assert api.read_stream_file(big) == b"x" * 100
    status = Path("/proc/self/status")  # a regular file whose st_size is 0, yet it holds ~1 KB
    if status.exists() and status.stat().st_size == 0:
        with pytest.raises(ResourceLimitError):
            read_user_file(status, None, InputImageError)


def test_input_limit_accepts_suffixes_and_refuses_nonsense(monkeypatch):
    monkeypatch.setenv("ICM_MAX_INPUT_BYTES", "2M")
    assert max_input_bytes() == 2 << 20
    monkeypatch.setenv("ICM_MAX_DECODE_MEMORY", "1.5G")
    with pytest.raises(ResourceLimitError, match="ICM_MAX_DECODE_MEMORY must be"):
        max_decode_memory()
    monkeypatch.setenv("ICM_MAX_DECODE_MEMORY", "0")
    with pytest.raises(ResourceLimitError, match="positive"):
        max_decode_memory()


@pytest.mark.parametrize("command", [["decompress", "/dev/zero", "-o", "x.png"], ["predict", "/dev/urandom"]])
def test_cli_refuses_devices_with_one_line(tmp_path, command):
    if not os.path.exists(command[1]):
        pytest.skip(f"no {command[1]} here")
    result = icm_subprocess(*command, cwd=tmp_path, timeout=120)
    assert_one_error_line(result, "not a regular file")
    assert not (tmp_path / "x.png").exists()


def test_cli_refuses_a_fifo_without_hanging(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    os.mkfifo(tmp_path / "pipe")
    result = icm_subprocess("decompress", "pipe", "-o", "x.png", cwd=tmp_path, timeout=120)
    assert_one_error_line(result, "FIFO")


# -- 2. animated images: the first frame only, said -----------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*16-bit")
@pytest.mark.parametrize("sixteen_bit", [False, True])
def test_an_animation_decodes_its_first_frame_only(sixteen_bit, monkeypatch):
    data = animated_png(32, 6, sixteen_bit=sixteen_bit)
    monkeypatch.setenv("ICM_MAX_PIXELS", str(32 * 32))  # one frame's worth: six frames would be over
    if sixteen_bit:  # the 16-bit path re-decodes with imagecodecs: it must not decode the other frames
        import imagecodecs

        def no_animation(*args, **kwargs):
            raise AssertionError("decoded every frame")

        monkeypatch.setattr(imagecodecs, "apng_decode", no_animation)
        monkeypatch.setattr(imagecodecs, "imread", no_animation)
    with pytest.warns(IcmWarning, match="6 frames; only the first is coded"):
        out = load_rgb(data)
    assert out.shape == (32, 32, 3) and int(out[..., 0].max()) == 0  # frame 0 has red 0, the others more


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_gif_frames_and_tiff_pages_code_the_first(fmt):
    frames = [Image.new("RGB", (16, 16), (200 if i == 0 else 0, 50 * i, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:])
    with pytest.warns(IcmWarning, match="several frames; only the first is coded"):
        out = load_rgb(buffer.getvalue())
    assert tuple(out[0, 0]) == (200, 0, 0)


def test_a_still_png_gives_no_frame_warning(photo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_rgb(_png_bytes(photo))


# -- 3. JPEG scan bombs ------------------------------------------------------------------------------------------
def test_scans_are_counted_from_the_markers():
    progressive = jpeg_with_scans(48, 40, 10, seed=1)
    assert count_jpeg_scans(progressive) == 10 and jpeg_frame_size(progressive) == (40, 48)
    assert count_jpeg_scans(jpeg_with_scans(16, 16, 500)) == 500
    assert count_jpeg_scans(jpeg_with_scans(16, 16, 500), stop_after=100) == 101
    baseline = io.BytesIO()
    Image.fromarray(synthetic_photo(24, 24)).save(baseline, format="JPEG")
    assert count_jpeg_scans(baseline.getvalue()) == 1
    assert count_jpeg_scans(b"not a jpeg") == 0


def test_the_scan_allowance_shrinks_with_the_image(monkeypatch):
    assert allowed_jpeg_scans(1000) == 100 and allowed_jpeg_scans(1 << 24) == 100
    assert allowed_jpeg_scans(1 << 26) == 25  # at the default pixel limit
    assert allowed_jpeg_scans(1 << 30) == 10  # never below what a real progressive JPEG holds
    monkeypatch.setenv("ICM_MAX_JPEG_SCANS", "5000")
    assert allowed_jpeg_scans(4096 * 4096) == 5000


def test_a_scan_bomb_is_refused_before_decoding(monkeypatch):
    from PIL import ImageFile

    bomb = jpeg_with_scans(64, 64, 150)

    def no_decoding(self):
        raise AssertionError("decoded a scan bomb")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InputImageError, match="more than 100 scans"):
        load_rgb(bomb)
    with pytest.raises(BitstreamError, match="more than 100 scans"):
        JpegCodec().decode(bomb)


def test_real_progressive_jpegs_pass_and_the_limit_can_be_raised(monkeypatch):
    assert load_rgb(jpeg_with_scans(64, 64, 10, seed=2)).shape == (64, 64, 3)
    monkeypatch.setenv("ICM_MAX_JPEG_SCANS", "200")
    assert JpegCodec().decode(jpeg_with_scans(64, 64, 150)).shape == (64, 64, 3)


def test_cli_refuses_a_scan_bomb(tmp_path, monkeypatch):
    (tmp_path / "bomb.jpg").write_bytes(jpeg_with_scans(64, 64, 1000))
    monkeypatch.chdir(tmp_path)
    assert_one_error_line(icm("decompress", "bomb.jpg", "-o", "x.png"), "scans")
    assert_one_error_line(icm("compress", "bomb.jpg", "--codec", "jpeg", "-o", "y.jpg"), "scans")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.jpg").exists()


# -- 4. features files: declared size and the classifier's working memory ------------------------------------
def _no_tensor_reading(monkeypatch) -> None:
    import safetensors.torch

    def refuse(*args, **kwargs):
        raise AssertionError("read the tensor of a file over a limit")

    monkeypatch.setattr(safetensors.torch, "load", refuse)


def test_features_over_the_pixel_limit_are_refused_before_reading(monkeypatch):
    _no_tensor_reading(monkeypatch)
    monkeypatch.setenv("ICM_MAX_PIXELS", str(64 * 64 - 1))
    with pytest.raises(ResourceLimitError, match="ICM_MAX_PIXELS"):
        load_features(features_file((64, 64)))


def test_a_large_declared_map_is_refused_at_the_default_limits(monkeypatch):
    _no_tensor_reading(monkeypatch)
    for name in ("ICM_MAX_PIXELS", "ICM_MAX_DECODE_MEMORY", "ICM_MAX_INPUT_BYTES"):
        monkeypatch.delenv(name, raising=False)
    data = features_file((4096, 4096), dtype="F8_E4M3")  # 10 MB declaring a 4096² image's map
    with pytest.raises(ResourceLimitError, match="ICM_MAX_DECODE_MEMORY"):
        load_features(data)


def test_features_within_the_limits_still_load(monkeypatch):
    monkeypatch.setenv("ICM_MAX_DECODE_MEMORY", "64M")
    features = load_features(features_file((64, 48)))
    assert tuple(features.tensors["features"].shape) == (1, 40, 8, 6)
    monkeypatch.setenv("ICM_MAX_DECODE_MEMORY", "100K")
    with pytest.raises(ResourceLimitError, match="for the classifier"):
        load_features(features_file((64, 48)))


def test_features_with_a_malformed_shape_are_refused():
    data = features_file((64, 64)).replace(b'"shape": [1, 40, 8, 8]', b'"shape": [1, 40, 8, -8]')
    with pytest.raises(FeatureFileError, match="shaped"):
        load_features(data)


# -- 6. learned decoders: working memory from the header --------------------------------------------------------
def _declaring(codec, side: int) -> bytes:
    """A stream of ``codec`` whose header declares ``side``×``side`` with empty entropy-coded streams."""
    header, streams = bitstream.unpack(codec.encode(synthetic_photo(64, 64), None))
    pad = -side % 64
    declared = replace(header, width=side, height=side, pad_bottom=pad, pad_right=pad, extra=b"")
    return bitstream.pack(declared, [b""] * len(streams))


def test_a_tiny_stream_declaring_a_large_image_is_refused_before_decoding(tiny_codec, monkeypatch):
    for name in ("ICM_MAX_PIXELS", "ICM_MAX_DECODE_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    data = _declaring(tiny_codec, 4096)
    assert len(data) < 100
    model, _ = tiny_codec.model(1)

    def no_decoding(*args, **kwargs):
        raise AssertionError("ran the decoder")

    monkeypatch.setattr(type(model), "decompress", no_decoding)
    with pytest.raises(ResourceLimitError, match="ICM_MAX_DECODE_MEMORY"):
        tiny_codec.decode(data)
    one = bitstream.unpack(_declaring(tiny_codec, 256))[0]
    monkeypatch.setenv("ICM_MAX_DECODE_MEMORY", str(tiny_codec.decode_memory([one])))  # one passes, two do not
    with pytest.raises(ResourceLimitError, match="2 icm-tiny streams"):
        tiny_codec.decode_batch([_declaring(tiny_codec, 256)] * 2)


def test_the_memory_estimate_grows_with_the_padded_size(tiny_codec):
    small = bitstream.unpack(_declaring(tiny_codec, 512))[0]
    large = bitstream.unpack(_declaring(tiny_codec, 4096))[0]
    assert tiny_codec.decode_memory([large]) > 2 * max_decode_memory() > tiny_codec.decode_memory([small])


def test_real_sizes_decode_under_the_default_limit(tiny_codec, monkeypatch, photo):
    monkeypatch.delenv("ICM_MAX_DECODE_MEMORY", raising=False)
    assert tiny_codec.decode(tiny_codec.encode(photo, None)).shape == photo.shape
    kodak = bitstream.unpack(_declaring(tiny_codec, 768))[0]
    clic = replace(kodak, width=2048, height=1365, pad_bottom=-1365 % 64, pad_right=0)
    assert tiny_codec.decode_memory([clic]) <= max_decode_memory()


def test_cli_refuses_a_learned_stream_over_the_memory_limit(tiny_codec, tmp_path, monkeypatch):
    from icmkit.codecs import registry

    monkeypatch.setattr(registry, "get_codec", lambda name: tiny_codec)
    monkeypatch.setattr(api, "get_codec", lambda name: tiny_codec)
    (tmp_path / "big.icm").write_bytes(_declaring(tiny_codec, 4096))
    monkeypatch.chdir(tmp_path)
    result = icm("decompress", "big.icm", "-o", "big.png", "--codec", "icm-tiny")
    assert_one_error_line(result, "working memory")
    assert not (tmp_path / "big.png").exists()


# -- 7. output-side OS errors --------------------------------------------------------------------------------
def test_a_full_disk_leaves_no_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="no space left"):
        atomic_write(tmp_path / "out.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_is_one_error(tmp_path, monkeypatch):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OutputError, match="permission denied"):
        atomic_write(tmp_path / "out.png", b"data")


def test_cli_output_errors_are_one_line(tmp_path, monkeypatch, photo):
    Image.fromarray(photo).save(tmp_path / "in.png")
    (tmp_path / "a_file").write_text("x")
    monkeypatch.chdir(tmp_path)
    if Path("/proc").is_dir():
        assert_one_error_line(icm("compress", "in.png", "--codec", "jpeg", "-o", "/proc/x.jpg"), "/proc/x.jpg")
    assert_one_error_line(icm("compress", "in.png", "--codec", "jpeg", "-o", "a_file/x.jpg"), "a_file")


# -- the boundary: whatever escapes a command ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("raised", "fragment"),
    [
        (MemoryError(), "out of memory"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), "out of memory"),
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
        (PermissionError(errno.EACCES, "Permission denied", "some/file"), "some/file: permission denied"),
        (ValueError("a wrapped library's complaint"), "a wrapped library's complaint"),
    ],
)
def test_the_boundary_turns_anything_into_one_line(raised, fragment, tmp_path, monkeypatch, photo):
    Image.fromarray(photo).save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)

    def escape(*args, **kwargs):
        raise raised

    monkeypatch.setattr(api, "read_image", escape)
    result = icm("compress", "in.png", "--codec", "jpeg", "-o", "out.jpg")
    assert_one_error_line(result, fragment)
    assert not (tmp_path / "out.jpg").exists()


def test_icm_traceback_shows_the_traceback(tmp_path, monkeypatch, photo):
    Image.fromarray(photo).save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)

    def escape(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(api, "read_image", escape)
    result = icm("compress", "in.png", "--codec", "jpeg", "-o", "out.jpg", env={"ICM_TRACEBACK": "1"})
    assert isinstance(result.exception, ValueError)


# -- 11. exclusive creation without --force ----------------------------------------------------------------------
@pytest.mark.parametrize("links", [True, False])
def test_a_concurrent_writer_loses_cleanly(tmp_path, monkeypatch, links):
    if not links:

        def unsupported(*args):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", unsupported)
    target = tmp_path / "out.icm"
    target.write_bytes(b"the other writer's file")
    with pytest.raises(OutputExistsError, match="already exists"):
        atomic_write(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"the other writer's file"
    assert [p.name for p in tmp_path.iterdir()] == ["out.icm"]  # no temporary file left
    atomic_write(tmp_path / "new.icm", b"ours", overwrite=False)
    assert (tmp_path / "new.icm").read_bytes() == b"ours"
    atomic_write(target, b"forced")
    assert target.read_bytes() == b"forced"


def test_cli_compress_does_not_replace_a_file_written_meanwhile(tmp_path, monkeypatch, photo):
    Image.fromarray(photo).save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)
    read_image = api.read_image

    def and_another_writer(source):  # the other process finishes while this one encodes
        (tmp_path / "out.jpg").write_bytes(b"theirs")
        return read_image(source)

    monkeypatch.setattr(api, "read_image", and_another_writer)
    result = icm("compress", "in.png", "--codec", "jpeg", "-o", "out.jpg")
    assert_one_error_line(result, "already exists")
    assert (tmp_path / "out.jpg").read_bytes() == b"theirs"
    (tmp_path / "out.jpg").unlink()
    assert icm("compress", "in.png", "--codec", "jpeg", "-o", "out.jpg", "--force").exit_code == 0


# -- minor: AVIF, false alpha warnings --------------------------------------------------------------------------
def _alpha_warnings(data: bytes) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_rgb(data)
    return [str(w.message) for w in caught if "alpha" in str(w.message)]


def test_lab_tiff_gives_no_alpha_warning():
    buffer = io.BytesIO()
    Image.new("LAB", (8, 8), (50, 10, 10)).save(buffer, format="TIFF")
    assert _alpha_warnings(buffer.getvalue()) == []


def test_an_opaque_animated_webp_gives_no_alpha_warning():
    frames = [Image.new("RGBA", (16, 16), (40 * i, 0, 0, 255)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"VP8X"
    data[20] |= 0x10  # the alpha flag, as encoders set it for a whole animation: Pillow then decodes RGBA
    assert Image.open(io.BytesIO(bytes(data))).mode == "RGBA"
    assert _alpha_warnings(bytes(data)) == []
    translucent = [Image.new("RGBA", (16, 16), (40 * i, 0, 0, 100)) for i in range(3)]
    buffer = io.BytesIO()
    translucent[0].save(buffer, format="WEBP", save_all=True, append_images=translucent[1:], lossless=True)
    assert len(_alpha_warnings(buffer.getvalue())) == 1


def test_an_rgba_png_still_warns(photo):
    assert len(_alpha_warnings(_png_bytes(np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])))) == 1


def test_api_errors_are_icm_errors(tmp_path):
    (tmp_path / "bomb.jpg").write_bytes(jpeg_with_scans(32, 32, 300))
    for call in (lambda: api.read_image(tmp_path / "bomb.jpg"), lambda: api.decompress(jpeg_with_scans(32, 32, 300))):
        with pytest.raises(IcmError):
            call()


def test_an_avif_whose_ispe_box_understates_its_frame_is_refused(monkeypatch):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    from icmkit.codecs.anchors.pillow_codecs import AvifCodec
    from icmkit.limits import avif_frame_sizes

    data = avif_with_small_ispe(128, 96)
    assert Image.open(io.BytesIO(data)).size == (16, 16) and (96, 128) in avif_frame_sizes(data)
    monkeypatch.setenv("ICM_MAX_PIXELS", str(64 * 64))  # the box's 16×16 passes; the coded 96×128 does not
    with pytest.raises(InputImageError, match="96×128"):
        load_rgb(data)
    with pytest.raises(BitstreamError, match="96×128"):
        AvifCodec().decode(data)
    monkeypatch.delenv("ICM_MAX_PIXELS")
    assert avif_frame_sizes(AvifCodec().encode(synthetic_photo(40, 56), 30)) == [(56, 40)]


def test_an_avif_whose_ispe_box_inflates_a_tiny_frame_is_refused():
    """A 40×56 frame in a box saying 4096²: libavif would scale it up to the canvas — 16.7 MP for 1 kB."""
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    from icmkit.codecs.anchors.pillow_codecs import AvifCodec

    data = avif_with_small_ispe(40, 56, declared=4096)
    assert len(data) < 4096 and Image.open(io.BytesIO(data)).size == (4096, 4096)
    with pytest.raises(InputImageError, match="canvas of 4096×4096 is larger than its coded frames"):
        load_rgb(data)
    with pytest.raises(BitstreamError, match="canvas of 4096×4096"):
        AvifCodec().decode(data)
    honest = AvifCodec().encode(synthetic_photo(40, 56), 30)  # canvas = frame: accepted both ways
    assert load_rgb(honest).shape == AvifCodec().decode(honest).shape == (40, 56, 3)


@pytest.mark.parametrize(
    "raised", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory"), RecursionError()]
)
def test_api_turns_exhaustion_into_an_icm_error(raised, monkeypatch):
    def exhausted(self, data):
        raise raised

    monkeypatch.setattr(JpegCodec, "decode", exhausted)
    with pytest.raises(ResourceLimitError, match="decompress"):
        api.decompress(jpeg_with_scans(16, 16, 10), "jpeg")
