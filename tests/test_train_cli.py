"""`icm train` (and `python -m icmkit.train`) through the real entry points, on a tiny generated data set."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from icmkit.codecs.learned import LearnedPixelCodec

from helpers.cli import assert_user_error, icm, run
from train_helpers import make_image_folder, tiny_yaml, write_yaml

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"))


def test_help_explains_config_overrides_and_torchrun():
    result = run("train", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for fragment in ("--config", "--list-fields", "KEY=VALUE", "torchrun"):
        assert fragment in result.stdout


def test_list_fields_prints_every_field():
    from icmkit.train.config import describe_fields

    result = run("train", "--list-fields")
    assert result.returncode == 0, result.stderr
    assert all(row["name"] in result.stdout for row in describe_fields())


def test_train_from_a_yaml_file(image_folder, tmp_path):
    config = tiny_yaml(tmp_path / "tiny.yaml", image_folder, tmp_path / "unused")
    result = icm("train", "--config", config, f"out={tmp_path / 'run'}", "steps=2", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    weights = tmp_path / "run" / "final.safetensors"
    assert f"weights: {weights}" in result.stdout
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]  # piped: JSON lines, as in log.jsonl
    assert (tmp_path / "run" / "log.jsonl").read_text().count('"loss"') == 2
    LearnedPixelCodec.from_weights_file(weights).model(1)


@pytest.mark.parametrize(
    "contents, overrides, fragment",
    [
        ({"stpes": 3}, [], "unknown field 'stpes'"),
        ({"crop": 100}, [], "crop must be a multiple of 64"),
        ({}, ["lmbda=abc"], "lmbda expects float"),
        ({}, ["data=/no/such/folder"], "training folder not found: /no/such/folder"),
    ],
)
def test_bad_configs_exit_2_with_one_line(contents, overrides, fragment, image_folder, tmp_path):
    config = write_yaml(tmp_path / "c.yaml", data=[str(image_folder)], out=str(tmp_path / "run"), **contents)
    assert_user_error(run("train", "--config", config, *overrides, env=ONE_THREAD), fragment)


def test_missing_config_file_exits_2(tmp_path):
    assert_user_error(run("train", "--config", tmp_path / "nope.yaml"), "nope.yaml: cannot read config")


def test_python_dash_m_icmkit_train_is_the_same_command(tmp_path):
    command = [sys.executable, "-m", "icmkit.train", "--config", str(tmp_path / "nope.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert_user_error(result, "nope.yaml: cannot read config")
    help_text = subprocess.run(
        [sys.executable, "-m", "icmkit.train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert help_text.returncode == 0 and "python -m icmkit.train" in help_text.stdout


def test_feature_codec_smoke_config_trains_resumes_and_codes(tmp_path):
    """configs/smoke-dicm.yaml: a variable-rate DICM feature codec on the bundled photos, through `icm train`."""
    from pathlib import Path

    from icmkit.codecs.feature import FeatureCodec

    from conftest import synthetic_photo

    config = Path(__file__).parents[1] / "configs" / "smoke-dicm.yaml"
    folder = tmp_path / "run"
    result = run(
        "train", "--config", config, f"out={folder}", "steps=4", "log_every=2", "tensorboard=false", env=ONE_THREAD
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    progress = [r for r in records if "loss" in r]
    assert [r["step"] for r in progress] == [2, 4]
    assert {"bpp", "nmse", "stage/blocks.6", "distill", "bpp_re"} <= set(progress[0]) and "psnr" not in progress[0]
    resumed = run(
        "train", "--config", config, f"out={folder}", "steps=6", "log_every=2", "tensorboard=false", env=ONE_THREAD
    )
    assert resumed.returncode == 0, resumed.stderr
    assert '"event": "resumed", "step": 4' in resumed.stdout
    codec = FeatureCodec.from_weights_file(folder / "final.safetensors", name="icm-feature-smoke")
    assert codec.quality.allowed == (1, 2)
    decoded = codec.decode(codec.encode(synthetic_photo(128, 128), 2))  # the classifier geometry: Lite0's 224² crop
    assert decoded.tensors["features"].shape == (1, 40, 28, 28)
    whole = codec.for_full_image()
    assert whole.decode(whole.encode(synthetic_photo(128, 128), 2)).tensors["features"].shape == (1, 40, 16, 16)
