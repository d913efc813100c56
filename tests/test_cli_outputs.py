"""Where `icm compress` / `icm decompress` write, and what they never overwrite (in-process, CliRunner)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from icmkit.cli.main import app

from conftest import registered_codecs, synthetic_photo


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture()
def tiny(tiny_codec):
    with registered_codecs(tiny_codec):
        yield tiny_codec.name


@pytest.fixture()
def photo_png(tmp_path):
    path = tmp_path / "kodim23.png"
    Image.fromarray(synthetic_photo(40, 48, seed=5)).save(path)
    return path


def test_decompress_never_targets_the_original_by_default(tiny, photo_png):
    original = photo_png.read_bytes()
    assert run("compress", photo_png, "--codec", tiny).exit_code == 0
    stream = photo_png.with_suffix(".icm")
    for force in ([], ["--force"]):  # --force overwrites the earlier decoded file, never the photo
        result = run("decompress", stream, *force)
        assert result.exit_code == 0, result.stderr
        assert photo_png.read_bytes() == original
        assert np.asarray(Image.open(photo_png.with_name("kodim23.decoded.png"))).shape == (40, 48, 3)
    assert_user_error(run("decompress", stream), "already exists")


def test_decompress_help_states_the_default():
    assert "IN.decoded.png" in " ".join(run("decompress", "--help").stdout.split())


def test_force_never_overwrites_an_input(photo_png, tmp_path):
    original = photo_png.read_bytes()
    assert_user_error(run("compress", photo_png, "-o", photo_png, "--force", "--codec", "jpeg"), "overwrite an input")
    linked = tmp_path / "other-name.jpg"  # another name for the same file: a hard link
    os.link(photo_png, linked)
    assert_user_error(run("compress", photo_png, "-o", linked, "--force", "--codec", "jpeg"), "overwrite an input")
    stream = tmp_path / "s.jpg"
    assert run("compress", photo_png, "-o", stream, "--codec", "jpeg").exit_code == 0
    os.link(stream, tmp_path / "s.png")  # a stream named like a PNG: -o s.png would replace the input itself
    assert_user_error(run("decompress", stream, "-o", tmp_path / "s.png", "--force"), "overwrite an input")
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
    Image.fromarray(synthetic_photo(20, 20)).save(tmp_path / "x" / "b.png")
    Image.fromarray(synthetic_photo(20, 20)).save(tmp_path / "y" / "b.jpg")
    before = (tmp_path / "y" / "b.jpg").read_bytes()
    # A batch: y/b.jpg is coded to itself (JPEG → .jpg), an input of the same command.
    result = run("compress", tmp_path / "x" / "b.png", tmp_path / "y" / "b.jpg", "--codec", "jpeg", "--force")
    assert_user_error(result, "overwrite an input")
    assert photo_png.read_bytes() == original and (tmp_path / "y" / "b.jpg").read_bytes() == before
    assert not (tmp_path / "x" / "b.jpg").exists()  # refused before anything is written


def test_same_name_in_one_folder_names_both_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(synthetic_photo(20, 20)).save(folder / "a.png")
    Image.fromarray(synthetic_photo(20, 20, seed=1)).save(folder / "a.bmp")
    for out in ([], ["-o", tmp_path / "out"]):
        result = run("compress", folder, "--codec", "webp", *out)
        assert_user_error(result, "would both be written to")
        assert "a.bmp" in result.stderr and "a.png" in result.stderr
    assert not list(folder.glob("*.webp"))


def test_same_name_in_different_folders_names_both_files(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.fromarray(synthetic_photo(20, 20)).save(tmp_path / sub / "a.png")
    result = run(
        "compress", tmp_path / "x" / "a.png", tmp_path / "y" / "a.png", "-o", tmp_path / "out", "--codec", "jpeg"
    )
    assert_user_error(result, "would both be written to")
    assert str(tmp_path / "x" / "a.png") in result.stderr and str(tmp_path / "y" / "a.png") in result.stderr


def test_interrupted_batch_resumes_with_skip_existing(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_photo(20, 24, seed=i)).save(folder / f"im{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "im0.jpg").write_bytes(b"written by the interrupted run")
    (out / ".im1.jpg.x1y2.tmp").write_bytes(b"half")  # what a killed atomic write leaves: never the real name
    assert_user_error(run("compress", folder, "-o", out, "--codec", "jpeg"), "--skip-existing")
    result = run("compress", folder, "-o", out, "--codec", "jpeg", "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert "skipping 1 of 3" in result.stderr and "2 of 2 images" in result.stdout
    assert (out / "im0.jpg").read_bytes() == b"written by the interrupted run"
    assert Image.open(out / "im1.jpg").size == (24, 20)
    assert_user_error(run("compress", folder, "-o", out, "--force", "--skip-existing"), "contradict")


def test_unrecognised_stream_names_the_cli_flag(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"no known signature here")
    assert_user_error(run("decompress", junk), "pass --codec NAME")


def test_python_api_names_its_own_argument():
    import icmkit
    from icmkit.errors import BitstreamError

    with pytest.raises(BitstreamError, match=r"pass codec=\.\.\."):
        icmkit.decompress(b"no known signature here")
