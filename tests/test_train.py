import json

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from icmkit.codecs.learned import LearnedPixelCodec
from icmkit.errors import ConfigError
from icmkit.train.config import TrainConfig, apply_overrides
from icmkit.train.loop import Trainer, export_checkpoint

from conftest import synthetic_photo


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    for i in range(4):
        Image.fromarray(synthetic_photo(80, 90, seed=i)).save(folder / f"{i}.png")
    return folder


def tiny_config(folder, out, **changes) -> TrainConfig:
    config = TrainConfig(out=str(out), data=[str(folder)], N=8, M=8, crop=64, batch_size=2, steps=4,
                         log_every=1, checkpoint_every=2, lr=1e-3)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_training_exports_usable_weights(image_folder, tmp_path):
    weights = Trainer(tiny_config(image_folder, tmp_path / "run")).run()
    codec = LearnedPixelCodec.from_weights_file(weights, name="icm-trained")
    image = synthetic_photo(30, 40)
    assert codec.decode(codec.encode(image, 1)).shape == image.shape
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)


def test_resume_is_exact(image_folder, tmp_path):
    straight = Trainer(tiny_config(image_folder, tmp_path / "a")).run()
    Trainer(tiny_config(image_folder, tmp_path / "b", max_minutes=1e-9)).run()  # stops after one step
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["step"] == 1
    resumed = Trainer(tiny_config(image_folder, tmp_path / "b")).run()
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_export_of_a_running_checkpoint(image_folder, tmp_path):
    Trainer(tiny_config(image_folder, tmp_path / "run")).run()
    meta = export_checkpoint(tmp_path / "run", tmp_path / "exported.safetensors")
    assert meta["step"] == 4
    LearnedPixelCodec.from_weights_file(tmp_path / "exported.safetensors").model(1)


@pytest.mark.parametrize("override", ["crop=100", "steps=0", "nope=1", "lmbda=abc", "batch_size"])
def test_invalid_configs_are_refused(override, image_folder):
    with pytest.raises(ConfigError):
        apply_overrides(TrainConfig(data=[str(image_folder)]), [override])


def test_overrides_parse_types(image_folder):
    config = apply_overrides(TrainConfig(), [f"data={image_folder}", "lmbda=0.01", "steps=7"])
    assert config.data == [str(image_folder)] and config.lmbda == 0.01 and config.steps == 7
