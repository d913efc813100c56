"""The head-feature cache (icmkit.train.feature_cache, `icm cache features`) and training a feature codec from it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from icmkit.errors import ConfigError
from icmkit.train import feature_cache as fc
from icmkit.train.config import TrainConfig, describe_fields
from icmkit.train.data import RandomCrops, find_images
from icmkit.train.loop import Trainer

from conftest import synthetic_photo
from helpers.cli import assert_user_error, run

VIEWS = 5  # more than one batch of the head (feature_cache.HEAD_BATCH = 4)
SHARD = 2  # images per shard: five images make three shards (the last one short)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Five generated photos of different sizes (the last one square: 136² after resizing, 9 crop positions a side)."""
    folder = tmp_path_factory.mktemp("cache-images")
    for i in range(4):
        Image.fromarray(synthetic_photo(150, 170 + 10 * i, seed=i)).save(folder / f"{i}.png")
    Image.fromarray(synthetic_photo(100, 100, seed=9)).save(folder / "small.png")
    return folder


@pytest.fixture(scope="module")
def backbone():
    from icmkit.backbones import split_classifier

    return split_classifier("tf_efficientnet_lite0", "blocks.2")


def dicm_config(folder, out, **changes) -> TrainConfig:
    """A tiny variable-rate DICM codec on Lite0's real head, with a tail stage and distillation (the tail terms)."""
    fields = {
        "architecture": "dicm-feature",
        "backbone": "tf_efficientnet_lite0",
        "split": "blocks.2",
        "N": 8,
        "M": 8,
        "hyper": 8,
        "latent_levels": 1,
        "re_levels": 0,
        "lmbdas": [0.5, 2.0],
        "tail_stages": ["blocks.6"],
        "distill_weight": 1.0,
        "resize": 136,
        "crop": 128,
        "batch_size": 2,
        "steps": 6,
        "lr": 1e-3,
        "log_every": 1,
        "checkpoint_every": 2,
        "tensorboard": False,
        "device": "cpu",
        "threads": 1,
        "data": [str(folder)],
        "out": str(out),
    }
    return TrainConfig.from_flat(**{**fields, **changes})


@pytest.fixture(scope="module")
def cache(image_folder, backbone, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("cache") / "lite0"
    fc.build_feature_cache(dicm_config(image_folder, "unused"), out, views=VIEWS, shard_images=SHARD, backbone=backbone)
    return out


def shards(folder) -> dict[str, torch.Tensor]:
    """Every shard's tensors, concatenated in image order."""
    parts = [load_file(p) for p in sorted(folder.glob("shard-*.safetensors"))]
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def test_cached_features_are_the_heads_output_rounded_to_float16(cache, image_folder, backbone, one_torch_thread):
    """Exactly ``head(views).half()`` on the views the offsets name, cut from the images as RandomCrops holds them
    (batched as the build batches them: float32 sums then round alike); within float16 rounding (relative 2^-11,
    stated as 2^-10) of the head on each view alone."""
    stored = shards(cache)
    files = find_images([image_folder])
    crops = RandomCrops(files, 128, resize=136)  # the training pipeline's own resize and padding
    assert stored["features"].shape == (5, VIEWS, 40, 16, 16) and stored["features"].dtype == torch.float16
    assert torch.equal(stored["index"], torch.arange(5))
    with torch.no_grad():
        for i in range(len(files)):
            image = crops._padded(i)
            offsets = stored["offsets"][i]
            assert np.array_equal(offsets.numpy(), fc.view_offsets(0, i, image.shape, 128, VIEWS))
            views = torch.stack([fc.cut_view(image, row, 128) for row in offsets])
            batches = [backbone.features(views[j : j + fc.HEAD_BATCH]) for j in range(0, VIEWS, fc.HEAD_BATCH)]
            assert torch.equal(stored["features"][i], torch.cat(batches).half())
            alone = backbone.features(views[:1])[0]
            torch.testing.assert_close(stored["features"][i, 0].float(), alone, rtol=2**-10, atol=1e-6)
    # The views differ (positions and flips); the square image's crops stay inside its 136² pixels.
    assert not torch.equal(stored["features"][0, 0], stored["features"][0, 1])
    assert int(stored["offsets"][4, :, :2].max()) <= 136 - 128
    center = load_file(cache / fc.CENTER_FILE)["features"]
    expected = backbone.features(torch.stack([crops.center_crop(i) for i in range(len(files))]))
    assert center.dtype == torch.float32 and torch.equal(center, expected)


def test_views_depend_on_the_seed_and_image_only():
    a = fc.view_offsets(0, 3, (300, 400, 3), 128, 8)
    assert np.array_equal(a, fc.view_offsets(0, 3, (300, 400, 3), 128, 8))
    assert not np.array_equal(a, fc.view_offsets(1, 3, (300, 400, 3), 128, 8))
    assert not np.array_equal(a, fc.view_offsets(0, 4, (300, 400, 3), 128, 8))
    many = fc.view_offsets(0, 0, (300, 400, 3), 128, 4000)
    assert many[:, 0].min() == 0 and many[:, 0].max() == 300 - 128 and many[:, 1].max() == 400 - 128
    assert 0.45 < many[:, 2].mean() < 0.55  # flips with probability ½, as RandomCrops


def test_build_is_deterministic_across_workers(cache, image_folder, tmp_path):
    """Two worker processes (one torch thread each) write the same bytes as the build in this process."""
    other = tmp_path / "pool"
    fc.build_feature_cache(dicm_config(image_folder, "unused"), other, views=VIEWS, shard_images=SHARD, workers=2)
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted(p.name for p in other.iterdir())
    assert all((cache / n).read_bytes() == (other / n).read_bytes() for n in names)


def test_rerun_resumes_an_interrupted_build(image_folder, backbone, tmp_path, monkeypatch, one_torch_thread):
    out = tmp_path / "cache"
    config = dicm_config(image_folder, "unused")
    original = fc._write_shard
    written = []

    def failing(folder, shard, *args):
        if shard == 1:
            raise KeyboardInterrupt  # stopped while computing the second shard
        written.append(shard)
        return original(folder, shard, *args)

    monkeypatch.setattr(fc, "_write_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        fc.build_feature_cache(config, out, views=VIEWS, shard_images=SHARD, backbone=backbone)
    assert written == [0] and not json.loads((out / fc.MANIFEST).read_text())["complete"]
    assert not list(out.glob(".*tmp"))  # no half-written shard
    with pytest.raises(ConfigError, match="unfinished"):
        fc.CachedViews(out)
    first = (out / "shard-00000.safetensors").stat().st_mtime_ns

    def counting(folder, shard, *args):
        written.append(shard)
        return original(folder, shard, *args)

    monkeypatch.setattr(fc, "_write_shard", counting)
    progress = []
    manifest = fc.build_feature_cache(
        config, out, views=VIEWS, shard_images=SHARD, backbone=backbone, progress=lambda *a: progress.append(a)
    )
    assert written == [0, 1, 2] and manifest["complete"]  # shard 0 was not computed again
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == first
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert len(fc.CachedViews(out)) == 5


def test_other_settings_on_the_same_cache_are_refused(cache, image_folder, backbone, tmp_path):
    config = dicm_config(image_folder, "unused")
    for changes, kwargs, fragment in [
        ({"crop": 64}, {}, "crop"),
        ({"resize": 0}, {}, "resize"),
        ({}, {"views": VIEWS + 1}, "views"),
        ({}, {"seed": 1}, "seed"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            fc.build_feature_cache(
                dicm_config(image_folder, "unused", **changes), cache, shard_images=SHARD, backbone=backbone, **kwargs
            )
    # Other data: a copy of the folder with one more image.
    copy = shutil.copytree(image_folder, tmp_path / "more")
    Image.fromarray(synthetic_photo(150, 150, seed=5)).save(copy / "extra.png")
    with pytest.raises(ConfigError, match="folders"):
        fc.build_feature_cache(dicm_config(copy, "unused"), cache, views=VIEWS, shard_images=SHARD, backbone=backbone)
    # Training refuses a cache of other settings, or of images that changed since.
    for changes in ({"crop": 64}, {"resize": 160}, {"data": [str(copy)]}):
        with pytest.raises(ConfigError, match="other settings"):
            Trainer(dicm_config(image_folder, tmp_path / "run", feature_cache=str(cache), **changes))
    # The same folder, one image replaced since the build (another size): only the file list's digest differs.
    (copy / "extra.png").unlink()
    copied = tmp_path / "copied-cache"
    fc.build_feature_cache(dicm_config(copy, "unused"), copied, views=1, shard_images=SHARD, backbone=backbone)
    Image.fromarray(synthetic_photo(150, 171, seed=0)).save(copy / "0.png")
    with pytest.raises(ConfigError, match=r"other settings \(files_digest: cache \S+, asked \S+\);"):
        Trainer(dicm_config(copy, tmp_path / "run2", feature_cache=str(copied)))
    # A folder that is not a cache is not written into.
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        fc.build_feature_cache(config, stranger, views=VIEWS, backbone=backbone)


def test_feature_cache_is_a_documented_field_for_feature_codecs_only(cache):
    assert "feature_cache" in {row["name"] for row in describe_fields()}
    with pytest.raises(ConfigError, match="feature_cache is for"):
        TrainConfig.from_flat(data=["x"], feature_cache=str(cache)).validate()
    with pytest.raises(ConfigError, match="a feature cache is for"):
        fc.build_feature_cache(TrainConfig.from_flat(data=["x"]), cache)


def test_views_cycle_through_every_view_before_repeating(cache):
    views = fc.CachedViews(cache, seed=7)
    stored = shards(cache)["features"]
    drawn = [views.view_of(2, use) for use in range(4 * VIEWS)]
    for cycle in range(4):
        assert sorted(drawn[cycle * VIEWS : (cycle + 1) * VIEWS]) == list(range(VIEWS))
    assert len({tuple(drawn[c * VIEWS : (c + 1) * VIEWS]) for c in range(4)}) > 1  # each cycle its own order
    for use in range(VIEWS + 1):
        assert torch.equal(views[2], stored[2, drawn[use]].float())
    assert views.uses.tolist() == [0, 0, VIEWS + 1, 0, 0]
    target = views.loss_target(torch.zeros(2, 40, 16, 16))
    assert target.shape == (2, 3, 128, 128) and target.stride() == (0, 0, 0, 0)  # the rate counts input pixels


def test_training_from_the_cache_resumes_exactly(cache, image_folder, tmp_path):
    straight = Trainer(dicm_config(image_folder, tmp_path / "a", feature_cache=str(cache))).run()
    Trainer(dicm_config(image_folder, tmp_path / "b", feature_cache=str(cache), stop_at=4)).run()
    checkpoint = load_file(tmp_path / "b" / "checkpoint.safetensors")
    assert int(checkpoint["rank0.views"].sum()) == 4 * 2  # four steps of two views (rank 0's draw counters)
    resumed = Trainer(dicm_config(image_folder, tmp_path / "b", feature_cache=str(cache))).run()
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    progress = [r for r in log if "loss" in r]
    assert [r["step"] for r in progress] == [1, 2, 3, 4, 5, 6]
    assert {"bpp", "nmse", "stage/blocks.6", "distill"} <= set(progress[0])
    assert all(np.isfinite(r["loss"]) for r in progress)
    statistics = next(r for r in log if r.get("event") == "feature statistics")
    assert statistics["images"] == 5


def test_a_resume_without_the_view_counters_would_differ(cache, image_folder, tmp_path, monkeypatch):
    """The counters are what makes the resume exact: dropping them from the checkpoint changes the weights."""
    straight = Trainer(dicm_config(image_folder, tmp_path / "a", feature_cache=str(cache))).run()
    Trainer(dicm_config(image_folder, tmp_path / "b", feature_cache=str(cache), stop_at=4)).run()
    monkeypatch.setattr(fc.CachedViews, "load_state", lambda self, uses: None)
    resumed = Trainer(dicm_config(image_folder, tmp_path / "b", feature_cache=str(cache))).run()
    a, b = load_file(straight), load_file(resumed)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_cli_builds_and_refuses_with_one_error_line(image_folder, tmp_path):
    config = tmp_path / "tiny.yaml"
    fields = dicm_config(image_folder, tmp_path / "run").flat()
    config.write_text(json.dumps(fields))  # JSON is YAML
    out = tmp_path / "cache"
    env = {"ICM_PROGRESS_SECONDS": "0"}  # in-process (the entry point's own tests are in test_cli.py)
    result = run("cache", "features", "--config", config, "--out", out, "--views", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert "5 images × 2 views" in result.stdout
    assert "5/5 images" in result.stderr  # progress on stderr
    assert json.loads((out / fc.MANIFEST).read_text())["views"] == 2
    assert_user_error(
        run("cache", "features", "--config", config, "--out", out, "--views", "3", env=env), "other settings"
    )
    assert_user_error(run("cache", "features", "--config", config, "--out", out, "crop=100", env=env), "crop")
    assert_user_error(
        run("cache", "features", "--config", config, "--out", out, "architecture=mean-scale-hyperprior", env=env),
        "a feature cache is for",
    )
    help_text = run("cache", "features", "--help", env={"COLUMNS": "200"})
    assert help_text.returncode == 0 and "--views" in help_text.stdout and "--workers" in help_text.stdout


def test_bf16_channels_last_training_from_the_cache_resumes_exactly(cache, image_folder, tmp_path, monkeypatch):
    """The v3 recipe's speed settings — bf16 autocast (as on a CPU with AMX / AVX512-BF16), channels last, the
    tail's batch norms folded — train, log their precision and resume bit for bit."""
    from icmkit.train import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    fast = {"feature_cache": str(cache), "cpu_bf16": True, "channels_last": True}
    straight = Trainer(dicm_config(image_folder, tmp_path / "a", **fast)).run()
    Trainer(dicm_config(image_folder, tmp_path / "b", stop_at=3, **fast)).run()
    resumed = Trainer(dicm_config(image_folder, tmp_path / "b", **fast)).run()
    a, b = load_file(straight), load_file(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert next(r for r in log if r.get("event") == "started")["precision"] == "bfloat16"
    assert next(r for r in log if r.get("event") == "folded batch norms")["count"] > 10
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
