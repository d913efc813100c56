"""The decoded-crop cache (issue 21): exact decoded crops and byte counts, determinism, resume, refusals, the reader,
and the `icm cache decoded` command. Small synthetic images only (never the shared data sets)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file
from typer.testing import CliRunner

import icmkit
from icmkit.cli.main import app
from icmkit.train import decoded_cache
from icmkit.train.decoded_cache import (
    MANIFEST_NAME,
    CacheError,
    CacheSpec,
    DecodedCrops,
    build,
    read_manifest,
    shard_files,
    training_grid,
)

from conftest import synthetic_photo

CROP = 48
SIZES = {"a/one.png": (90, 120), "a/two.png": (60, 70), "b/small.png": (30, 40)}  # small.png: padded to the crop


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for seed, (name, (height, width)) in enumerate(SIZES.items()):
        path = root / name
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(synthetic_photo(height, width, seed=seed)).save(path)
    return [root / "a", root / "b"]


def jpeg_spec(folders, **changes) -> CacheSpec:
    settings = {"codec": "jpeg", "folders": tuple(map(str, folders)), "crop": CROP, "crops": 2, "qualities": 3}
    return CacheSpec(**{**settings, **changes})


@pytest.fixture(scope="module")
def jpeg_cache(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "jpeg"
    result = build(jpeg_spec(folders), out)
    assert (result.built, result.skipped, result.items) == (3, 0, 3 * 2 * 3)
    return out


def shard_bytes(out) -> dict[str, bytes]:
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in shard_files(out)}


def test_shards_hold_exactly_what_the_codec_decodes_and_its_byte_counts(jpeg_cache):
    codec = icmkit.get_codec("jpeg")
    files = shard_files(jpeg_cache)
    assert [p.relative_to(jpeg_cache / "shards").as_posix() for p in files] == [
        "0/one.png.safetensors",
        "0/two.png.safetensors",
        "1/small.png.safetensors",
    ]
    for path in files:
        shard = load_file(path)
        assert shard["original"].shape == (2, CROP, CROP, 3) and shard["original"].dtype == np.uint8
        assert shard["decoded"].shape == (2, 3, CROP, CROP, 3) and shard["decoded"].dtype == np.uint8
        for k in range(2):
            for j in range(3):
                quality = int(shard["quality"][k, j])
                data = codec.encode(shard["original"][k], quality)
                assert np.array_equal(shard["decoded"][k, j], codec.decode(data))
                assert shard["bytes"][k, j] == len(data)
            assert not np.array_equal(shard["decoded"][k, 0], shard["original"][k])  # lossy: something was coded


def test_originals_are_crops_of_the_source_at_the_recorded_offsets(jpeg_cache, folders):
    image = np.asarray(Image.open(folders[0] / "one.png"))
    shard = load_file(jpeg_cache / "shards/0/one.png.safetensors")
    for k, (top, left) in enumerate(shard["offset"]):
        assert np.array_equal(shard["original"][k], image[top : top + CROP, left : left + CROP])
    small = np.asarray(Image.open(folders[1] / "small.png"))  # 30×40, reflection-padded to 48×48
    padded = np.pad(small, ((0, CROP - 30), (0, CROP - 40), (0, 0)), mode="reflect")
    shard = load_file(jpeg_cache / "shards/1/small.png.safetensors")
    assert np.array_equal(shard["original"][0], padded)


def test_qualities_come_one_from_each_slice_of_the_training_grid(jpeg_cache):
    grid = training_grid("jpeg")
    assert grid == tuple(range(5, 96)) and training_grid("hevc444") == tuple(range(12, 51))
    slices = np.array_split(np.array(grid), 3)
    seen = set()
    for path in shard_files(jpeg_cache):
        for row in load_file(path)["quality"]:
            assert all(part[0] <= q <= part[-1] for q, part in zip(row, slices)), row
            seen.update(row.tolist())
    assert len(seen) > 6  # drawn, not a fixed set


def test_manifest_records_codec_grid_settings_and_libraries(jpeg_cache, folders):
    record = read_manifest(jpeg_cache)
    assert record["codec"] == "jpeg" and record["grid"] == list(range(5, 96))
    assert (record["crop"], record["crops"], record["qualities"], record["seed"]) == (CROP, 2, 3, 0)
    assert record["folders"] == [str(f.resolve()) for f in folders]
    assert record["libraries"]["pillow"] and "libjpeg_turbo" in record["libraries"]


def test_two_builds_write_identical_shards_and_parallel_equals_serial(jpeg_cache, folders, tmp_path):
    again = tmp_path / "again"
    build(jpeg_spec(folders), again, workers=2)
    assert shard_bytes(again) == shard_bytes(jpeg_cache)
    other_seed = tmp_path / "seed1"
    build(jpeg_spec(folders, seed=1), other_seed)
    assert shard_bytes(other_seed) != shard_bytes(jpeg_cache)


def test_a_rerun_rebuilds_only_the_missing_shard(jpeg_cache, folders, tmp_path):
    out = tmp_path / "resume"
    build(jpeg_spec(folders), out)
    before = shard_bytes(out)
    victim = out / "shards/0/two.png.safetensors"
    victim.unlink()
    others = {p: p.stat().st_mtime_ns for p in shard_files(out)}
    (victim.parent / ".two.png.safetensors.abc.tmp").write_bytes(b"partial")  # a killed run's temporary file
    started = []
    result = build(jpeg_spec(folders), out, on_start=lambda total, done: started.append((total, done)))
    assert (result.built, result.skipped) == (1, 2) and started == [(18, 12)]
    assert shard_bytes(out) == before
    assert {p: p.stat().st_mtime_ns for p in shard_files(out) if p != victim} == others
    assert not list(out.rglob("*.tmp"))


def test_a_failing_build_leaves_complete_shards_only_and_resumes(folders, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    real = decoded_cache.build_shard_arrays

    def fail_on_two(spec, source):
        if source.relative == "two.png":
            raise KeyboardInterrupt  # as if killed while coding it
        return real(spec, source)

    monkeypatch.setattr(decoded_cache, "build_shard_arrays", fail_on_two)
    with pytest.raises(KeyboardInterrupt):
        build(jpeg_spec(folders), out)
    assert [p.name for p in shard_files(out)] == ["one.png.safetensors"]
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix not in (".safetensors", ".json", ".lock")]
    monkeypatch.setattr(decoded_cache, "build_shard_arrays", real)
    assert build(jpeg_spec(folders), out).built == 2


def test_a_rerun_with_other_settings_is_refused_and_changes_nothing(jpeg_cache, folders):
    manifest = (jpeg_cache / MANIFEST_NAME).read_bytes()
    before = shard_bytes(jpeg_cache)
    for changed in (jpeg_spec(folders, crops=3), jpeg_spec(folders, seed=7), jpeg_spec(folders, codec="jpeg444")):
        with pytest.raises(CacheError, match="built differently"):
            build(changed, jpeg_cache)
    with pytest.raises(CacheError, match="built differently.*folders"):
        build(jpeg_spec(folders[:1]), jpeg_cache)
    assert (jpeg_cache / MANIFEST_NAME).read_bytes() == manifest and shard_bytes(jpeg_cache) == before


def test_a_folder_that_is_not_a_cache_is_refused(folders, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not empty"):
        build(jpeg_spec(folders), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".build.lock", "notes.txt"]
    with pytest.raises(CacheError, match="qualities per crop"):
        build(jpeg_spec(folders, qualities=92), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_hevc444_cache_decodes_exactly(folders, tmp_path):
    codec = icmkit.get_codec("hevc444")
    if not codec.availability().ok:
        pytest.skip(codec.availability().reason)
    spec = CacheSpec("hevc444", (str(folders[1]),), crop=32, crops=1, qualities=2)
    build(spec, tmp_path)
    shard = load_file(shard_files(tmp_path)[0])
    assert read_manifest(tmp_path)["libraries"]["x265"]
    for j, quality in enumerate(shard["quality"][0]):
        assert 12 <= quality <= 50
        data = codec.encode(shard["original"][0], int(quality))
        assert np.array_equal(shard["decoded"][0, j], codec.decode(data)) and shard["bytes"][0, j] == len(data)


def test_dataset_yields_pairs_flipped_together_with_their_quality(jpeg_cache):
    data = DecodedCrops(jpeg_cache)
    assert len(data) == 3 * 2 * 3
    torch.manual_seed(0)
    flips = set()
    for index in (0, 5, 17):
        original, decoded, quality = data[index]
        assert original.shape == decoded.shape == (3, CROP, CROP) and original.dtype == decoded.dtype == torch.float32
        assert quality.dtype == torch.float32 and quality.shape == ()
        stored = data.record(index)
        assert quality.item() == stored["quality"]
        as_stored = torch.from_numpy(stored["decoded"]).permute(2, 0, 1).float() / 255
        flipped = torch.equal(decoded, as_stored.flip(-1))
        assert flipped or torch.equal(decoded, as_stored)
        expected = torch.from_numpy(stored["original"]).permute(2, 0, 1).float() / 255
        assert torch.equal(original, expected.flip(-1) if flipped else expected)
        flips.add(flipped)
    with pytest.raises(IndexError):
        data[len(data)]


def test_dataset_patches_are_aligned_windows(jpeg_cache):
    data = DecodedCrops(jpeg_cache, patch=16, align=16, hflip=False)
    torch.manual_seed(1)
    original, decoded, _ = data[3]
    assert original.shape == decoded.shape == (3, 16, 16)
    stored = torch.from_numpy(data.record(3)["original"]).permute(2, 0, 1).float() / 255
    windows = [stored[:, t : t + 16, s : s + 16] for t in (0, 16, 32) for s in (0, 16, 32)]
    assert any(torch.equal(original, w) for w in windows)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)
    originals, decodeds, qualities = next(iter(loader))
    assert originals.shape == (4, 3, 16, 16) and qualities.shape == (4,)
    with pytest.raises(CacheError, match="larger than"):
        DecodedCrops(jpeg_cache, patch=CROP + 1)


def test_command_builds_resumes_and_refuses_with_one_error_line(folders, tmp_path):
    def icm(out, codec="jpeg", data=folders, crops=1):
        args = ["cache", "decoded", "--codec", codec, *[f"--data={folder}" for folder in data], "--out", str(out)]
        return CliRunner().invoke(app, [*args, "--crop", "32", "--crops", str(crops), "--qualities", "2"])

    out = tmp_path / "cli"
    result = icm(out)
    assert result.exit_code == 0, result.output
    assert "6 items in 3 shards (3 built now, 0 already there)" in result.stdout
    assert "(0 built now, 3 already there)" in icm(out).stdout
    fresh = tmp_path / "fresh"
    for result, message in (
        (icm(out, crops=2), "built differently"),
        (icm(fresh, codec="no-such-codec"), "unknown codec"),
        (icm(fresh, data=[*folders, tmp_path / "missing"]), "training folder not found"),
    ):
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not fresh.exists() and len(shard_files(out)) == 3


def test_command_help_imports_nothing_heavy():
    probe = (
        "import sys\nfrom icmkit.cli.main import main\nsys.argv = ['icm', 'cache', 'decoded', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'numpy', 'PIL') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--qualities" in result.stdout, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"')) == []


def test_each_image_draws_its_own_crops_and_qualities_from_the_seed_and_its_key(folders):
    spec = jpeg_spec(folders).resolved()
    one, other = decoded_cache.Source(0, "x.png"), decoded_cache.Source(0, "y.png")
    first = decoded_cache.draw(spec, one, 500, 500)
    assert all(np.array_equal(a, b) for a, b in zip(first, decoded_cache.draw(spec, one, 500, 500)))
    assert not np.array_equal(first[0], decoded_cache.draw(spec, other, 500, 500)[0])
    assert not np.array_equal(first[0], decoded_cache.draw(CacheSpec(**{**spec.__dict__, "seed": 1}), one, 500, 500)[0])
