"""The `icm` command: through its real entry point (a subprocess running the installed console script) where start-up,
exit status and the one error line are what is tested; in-process (``run``) where the command's work is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icmkit.codecs import CodecKind

from conftest import codec_params, require_codec, synthetic_photo
from helpers.cli import SCRIPT, assert_user_error, icm, run


@pytest.fixture()
def photo_png(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(72, 100, seed=3)).save(path)
    return path


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("coded")
    Image.fromarray(synthetic_photo(72, 100, seed=3)).save(folder / "photo.png")
    result = icm("compress", folder / "photo.png", "-o", folder / "photo.icm")
    assert result.returncode == 0, result.stderr
    return folder / "photo.icm"


def test_every_command_has_help():
    for command in ("compress", "decompress", "info", "codecs", "zoo", "bd", "demo"):
        result = icm(command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_learned_round_trip_and_info(coded, tmp_path):
    out = tmp_path / "decoded.png"
    result = run("decompress", coded, "-o", out)  # in-process: the stream made by the entry point above
    assert result.returncode == 0, result.stderr
    decoded = np.asarray(Image.open(out))
    assert decoded.shape == (72, 100, 3)
    info = json.loads(run("info", coded, "--json").stdout)
    assert info["codec"] == "icm-mse" and (info["width"], info["height"]) == (100, 72)
    assert info["bytes"] == coded.stat().st_size
    assert abs(info["bpp"] - 8 * coded.stat().st_size / 7200) < 1e-9
    assert info["weights"] == "match installed"


@pytest.mark.parametrize("codec", codec_params(CodecKind.PIXEL, exclude=("icm-mse",)))
def test_every_pixel_codec_round_trips(codec, photo_png, tmp_path):
    """In-process (the codecs are what is tested here; the entry point's start-up is, in the tests beside it)."""
    require_codec(codec)
    coded = tmp_path / "coded.bin"
    result = run("compress", photo_png, "-o", coded, "--codec", codec)
    assert result.returncode == 0, result.stderr
    result = run("decompress", coded, "-o", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (72, 100, 3)


def test_folder_batch_with_summary(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_photo(40, 50, seed=i)).save(src / f"im{i}.png")
    (src / "sub").mkdir()
    Image.fromarray(synthetic_photo(40, 50, seed=9)).save(src / "sub" / "im0.png")  # same name, other folder
    result = run("compress", src, "-o", tmp_path / "out", "--codec", "jpeg", "-q", "50")
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.jpg"))
    assert written == ["im0.jpg", "im1.jpg", "im2.jpg", "sub/im0.jpg"]
    assert "4 of 4 images" in result.stdout


def test_existing_output_needs_force(coded, photo_png, tmp_path):
    target = tmp_path / "exists.icm"
    target.write_bytes(b"keep me")
    assert_user_error(run("compress", photo_png, "-o", target), "--force")
    assert target.read_bytes() == b"keep me"
    assert run("compress", photo_png, "-o", target, "--force").returncode == 0
    assert target.read_bytes() != b"keep me"


def test_output_never_overwrites_input(photo_png):
    before = photo_png.read_bytes()
    assert_user_error(icm("compress", photo_png, "-o", photo_png, "--force"), "overwrite an input")
    assert photo_png.read_bytes() == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("compress", "missing.png"), "no such file"),
        (("compress", "PHOTO", "--codec", "nope"), "unknown codec"),
        (("compress", "PHOTO", "--codec", "jpeg", "-q", "500"), "outside"),
        (("compress", "PHOTO", "-q", "99"), "outside"),
        (("compress", "TEXT"), "not an image format icmkit reads"),
        (("decompress", "missing.icm"), "no such file"),
        (("decompress", "TEXT"), "unrecognised stream"),
        (("info", "TEXT"), "not an .icm"),
    ],
)
def test_bad_input_gets_one_line_and_status_2(args, fragment, photo_png, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not an image")
    args = [photo_png if a == "PHOTO" else text if a == "TEXT" else a for a in args]
    assert_user_error(icm(*args, "-o", tmp_path / "out.x") if args[0] == "compress" else icm(*args), fragment)
    assert not (tmp_path / "out.x").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "future", "huge"])
def test_damaged_icm_is_refused_without_output(damage, coded, tmp_path):
    data = bytearray(coded.read_bytes())
    env = None
    if damage == "truncate":
        data = data[: len(data) - 7]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "future":
        data[4] = 9
    else:
        env = {"ICM_MAX_PIXELS": "1000"}
    bad = tmp_path / "bad.icm"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.png"
    fragment = {"truncate": "corrupt", "flip": "corrupt", "future": "newer", "huge": "limit"}[damage]
    assert_user_error(icm("decompress", bad, "-o", out, env=env), fragment)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.png*"))  # no temp file left behind


def test_codecs_lists_every_codec_with_availability():
    rows = json.loads(icm("codecs", "--json").stdout)
    names = [r["name"] for r in rows]
    for expected in ("jpeg", "jpeg444", "webp", "jpeg2000", "hevc444", "avif", "jxl", "vvc", "icm-mse"):
        assert expected in names
    for row in rows:
        assert row["available"] or row["reason"]


def test_demo_prints_rate_and_quality():
    result = run("demo")
    assert result.returncode == 0, result.stderr
    assert "bpp" in result.stdout and "PSNR" in result.stdout


def test_python_module_entry_point_matches(tmp_path):
    result = subprocess.run([sys.executable, "-m", "icmkit", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "compress" in result.stdout
    assert shutil.which("icm") or SCRIPT.exists()
