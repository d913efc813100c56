import json
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from icmkit.codecs.learned import LearnedPixelCodec
from icmkit.errors import ConfigError
from icmkit.models import build_model
from icmkit.train.config import TrainConfig, apply_overrides
from icmkit.train.loop import Trainer, export_checkpoint
from icmkit.train.precision import MixedPrecision, keep_entropy_models_in_float32
from icmkit.weights import load_weights, read_metadata

from conftest import synthetic_photo
from train_helpers import TINY_FIELDS, make_image_folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("train"))


def tiny_config(folder, out, **changes) -> TrainConfig:
    return TrainConfig.from_flat(**{**TINY_FIELDS, "out": str(out), "data": [str(folder)], **changes})


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


def test_stop_at_keeps_the_schedule_and_resumes_exactly(image_folder, tmp_path):
    straight = Trainer(tiny_config(image_folder, tmp_path / "a", lr_drop_at=0.5)).run()
    Trainer(tiny_config(image_folder, tmp_path / "b", lr_drop_at=0.5, stop_at=3)).run()
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    rates = [r["lr"] for r in log if "loss" in r]
    assert rates[-1] < rates[0]  # the drop of the 4-step schedule happened at step 2
    resumed = Trainer(tiny_config(image_folder, tmp_path / "b", lr_drop_at=0.5)).run()
    a, b = load_file(straight), load_file(resumed)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_export_of_a_running_checkpoint(image_folder, tmp_path):
    Trainer(tiny_config(image_folder, tmp_path / "run")).run()
    meta = export_checkpoint(tmp_path / "run", tmp_path / "exported.safetensors")
    assert meta["step"] == 4
    LearnedPixelCodec.from_weights_file(tmp_path / "exported.safetensors").model(1)


@pytest.mark.parametrize("override", ["crop=100", "steps=0", "nope=1", "lmbda=abc", "batch_size", "stop_at=-1"])
def test_invalid_configs_are_refused(override, image_folder):
    with pytest.raises(ConfigError):
        apply_overrides(TrainConfig.from_flat(data=[str(image_folder)]), [override])


def test_overrides_parse_types(image_folder):
    config = apply_overrides(TrainConfig(), [f"data={image_folder}", "lmbda=0.01", "steps=7"])
    assert config.data.folders == [str(image_folder)] and config.loss.lmbda == 0.01 and config.schedule.steps == 7


def test_checkpoint_and_weights_record_provenance(image_folder, tmp_path):
    weights = Trainer(tiny_config(image_folder, tmp_path / "run", lmbda=0.01, beta=0.0)).run()
    meta = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    expected_commit = head.stdout.strip() if head.returncode == 0 else None
    assert meta["git_commit"] == expected_commit
    assert (meta["step"], meta["lmbda"], meta["beta"], meta["world_size"]) == (4, 0.01, 0.0, 1)
    assert meta["data"] == [str(image_folder)] and meta["config"]["lmbda"] == 0.01
    exported = read_metadata(weights)
    assert exported["git_commit"] == (expected_commit or "null")  # weights metadata keeps text as it is
    assert json.loads(exported["beta"]) == 0.0 and json.loads(exported["steps"]) == 4


def test_tensorboard_gets_every_logged_scalar(image_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(tiny_config(image_folder, tmp_path / "run", tensorboard=True)).run()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/bpp", "train/psnr", "train/aux", "train/lr"} <= set(tags)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]


def test_bundled_samples_are_a_data_folder():
    from icmkit.data import SAMPLES_DIR

    assert TrainConfig.from_flat(data=["icmkit:samples", "x"]).data_folders()[0] == SAMPLES_DIR


def test_missing_data_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="training folder not found"):
        Trainer(tiny_config(tmp_path / "absent", tmp_path / "run"))


def test_amp_is_off_on_the_cpu():
    precision = MixedPrecision(torch.device("cpu"), enabled=True)
    assert not precision.enabled and precision.describe() == "float32"


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    from icmkit.train import precision as module

    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: native)
    precision = MixedPrecision(torch.device("cpu"), enabled=False, cpu_bf16=True)
    assert precision.describe() == ("bfloat16" if native else "float32")
    assert not precision.scaler.is_enabled()  # bf16 needs no loss scaling


def test_depthwise_convolutions_stay_float32_under_cpu_autocast(monkeypatch):
    from icmkit.train import precision as module

    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=4), torch.nn.Conv2d(4, 2, 1))
    precision = MixedPrecision(torch.device("cpu"), enabled=False, cpu_bf16=True)
    precision.prepare(net)
    with precision.autocast():
        depthwise = net[0](torch.rand(1, 4, 8, 8))
        pointwise = net[1](depthwise)
    assert depthwise.dtype == torch.float32 and pointwise.dtype == torch.bfloat16


def test_entropy_models_stay_float32_under_autocast():
    torch.manual_seed(0)
    model = build_model("mean-scale-hyperprior", N=8, M=8)
    keep_entropy_models_in_float32(model, "cpu")
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        output = model(torch.rand(1, 3, 64, 64))
    assert output["x_hat"].dtype == torch.bfloat16  # the transforms do run in low precision
    assert all(lik.dtype == torch.float32 for lik in output["likelihoods"].values())


def test_variable_rate_training_from_a_single_rate_model(image_folder, tmp_path):
    """A single-rate hyperprior warm-starts a variable-rate one (gains at sqrt(λ_q / λ_source)); every step
    trains a continuous quality at its interpolated λ, and the export codes at any quality in range."""
    from icmkit.codecs.learned import VariableRatePixelCodec

    single = Trainer(tiny_config(image_folder, tmp_path / "single", lmbda=0.01)).run()
    config = tiny_config(
        image_folder,
        tmp_path / "vr",
        architecture="variable-rate-hyperprior",
        lmbdas=[0.0025, 0.01, 0.04],
        init_from=str(single),
    )
    trainer = Trainer(config)
    assert torch.allclose(trainer.model.gains(1)[0], torch.full((1, 8, 1, 1), 0.5))
    assert torch.allclose(trainer.model.gains(3)[0], torch.full((1, 8, 1, 1), 2.0))
    weights = trainer.run()
    codec = VariableRatePixelCodec.from_weights_file(weights, name="icm-trained-vr")
    assert codec.quality.hi == 3 and codec.quality.grid == (1, 2, 3)
    image = synthetic_photo(30, 40)
    assert codec.decode(codec.encode(image, 2.3)).shape == image.shape
    log = [json.loads(line) for line in (tmp_path / "vr" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("as") for r in log if r.get("event") == "initialised")
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)


def test_warm_start_refuses_other_widths(image_folder, tmp_path):
    single = Trainer(tiny_config(image_folder, tmp_path / "single")).run()
    config = tiny_config(
        image_folder,
        tmp_path / "vr",
        architecture="variable-rate-hyperprior",
        lmbdas=[0.01, 0.02],
        M=16,
        init_from=str(single),
    )
    with pytest.raises(ConfigError, match="widths"):
        Trainer(config)


def test_fine_tune_on_a_wider_rate_grid_regrids_the_gains(image_folder, tmp_path):
    """init_from a variable-rate model with other λ (here one more, below the range): everything but the gains
    loads as it is; rows at the source's λ come back as they were, the new row continues the lowest segment."""
    source_config = tiny_config(
        image_folder, tmp_path / "three", architecture="variable-rate-hyperprior", lmbdas=[0.0025, 0.01, 0.04]
    )
    source = Trainer(source_config).run()
    wider = tiny_config(
        image_folder,
        tmp_path / "four",
        architecture="variable-rate-hyperprior",
        lmbdas=[0.000625, 0.0025, 0.01, 0.04],
        init_from=str(source),
    )
    trainer = Trainer(wider)
    loaded, _ = load_weights(source)
    assert trainer.model.qualities == 4
    assert torch.allclose(trainer.model.gain[1:], loaded.gain.abs(), rtol=1e-6)
    slope = loaded.gain[0].abs().log() - loaded.gain[1].abs().log()  # one λ step of four, in log gain
    assert torch.allclose(trainer.model.gain[0].log(), loaded.gain[0].abs().log() + slope, rtol=1e-5, atol=1e-6)
    kept = {k: v for k, v in loaded.state_dict().items() if "gain" not in k}
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in kept.items())
    log = [json.loads(line) for line in (tmp_path / "four" / "log.jsonl").read_text().splitlines()]
    assert any("regridded" in r.get("as", "") for r in log if r.get("event") == "initialised")


@pytest.mark.parametrize("lmbdas", ["not json", '["a"]', "[0.01]", "[0.04, 0.01, 0.02]"])
def test_fine_tune_from_a_file_with_bad_lambda_metadata_is_one_config_error(image_folder, tmp_path, lmbdas):
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = Trainer(
        tiny_config(image_folder, tmp_path / "src", architecture="variable-rate-hyperprior", lmbdas=[0.01, 0.02, 0.04])
    ).run()
    with safe_open(str(source), "pt") as handle:
        metadata = {**handle.metadata(), "lmbdas": lmbdas}
    save_file(load_file(str(source)), str(tmp_path / "edited.safetensors"), metadata=metadata)
    wider = tiny_config(
        image_folder,
        tmp_path / "b",
        architecture="variable-rate-hyperprior",
        lmbdas=[0.005, 0.01, 0.02, 0.04],
        init_from=str(tmp_path / "edited.safetensors"),
    )
    with pytest.raises(ConfigError, match="init_from"):
        Trainer(wider)
