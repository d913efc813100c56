"""Training with the perception term and fine-tuning from shipped-style weights (tiny models, CPU)."""

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from icmkit.errors import ConfigError
from icmkit.train.config import TrainConfig
from icmkit.train.loop import Trainer, build_objective
from icmkit.weights import load_weights

from conftest import synthetic_photo


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        Image.fromarray(synthetic_photo(70, 70, seed=i)).save(folder / f"{i}.png")
    return folder


def config(folder, out, **changes) -> TrainConfig:
    base = TrainConfig.from_flat(
        out=str(out),
        data=[str(folder)],
        N=8,
        M=8,
        crop=64,
        batch_size=2,
        steps=2,
        log_every=1,
        checkpoint_every=10,
        lr=1e-3,
    )
    for key, value in changes.items():
        base.set(key, value)
    return base


def test_perception_term_trains_and_is_logged(folder, tmp_path):
    run = config(
        folder,
        tmp_path / "mmd",
        beta=2.0,
        perception_weights="none",
        mmd_samples=64,
        perception_layers=["blocks.1", "blocks.3"],
    )
    Trainer(run).run()
    records = [json.loads(line) for line in (tmp_path / "mmd" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 2 and all("mmd/blocks.1" in r and "perception" in r for r in steps)
    meta = load_weights(tmp_path / "mmd" / "final.safetensors")[1]
    assert json.loads(meta["beta"]) == 2.0


def test_objective_without_beta_loads_no_network(folder, tmp_path):
    objective = build_objective(config(folder, tmp_path / "x"))
    assert objective.perception is None


def test_bad_perception_layers_are_a_config_error(folder, tmp_path):
    with pytest.raises(ConfigError, match="perception_layers"):
        build_objective(config(folder, tmp_path / "x", beta=1.0, perception_weights="none", perception_layers=["nope"]))


def test_init_from_starts_at_the_given_weights(folder, tmp_path):
    first = Trainer(config(folder, tmp_path / "a")).run()
    tuned = Trainer(config(folder, tmp_path / "b", init_from=str(first), steps=1, lr=1e-12, aux_lr=1e-12))
    source = load_file(str(first))
    assert all(torch.equal(v, source[k]) for k, v in tuned.model.state_dict().items() if "table" not in k)
    log = (tmp_path / "b" / "log.jsonl").read_text()
    assert '"initialised"' in log


def test_init_from_other_architecture_is_refused(folder, tmp_path):
    other = Trainer(config(folder, tmp_path / "wide", N=16)).run()
    with pytest.raises(ConfigError, match="init_from"):
        Trainer(config(folder, tmp_path / "c", init_from=str(other)))


def test_distill_floor_keeps_the_logits_pull_at_low_lambda():
    """Below the floor the distillation term weighs as it would at the floor; at or above it nothing changes."""
    from types import SimpleNamespace

    from torch import nn

    from icmkit.backbones.split import Tail
    from icmkit.losses.feature import FeatureObjective

    torch.manual_seed(0)
    finish = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    backbone = SimpleNamespace(tail=Tail([("stage", nn.Conv2d(4, 4, 1))], finish))
    features = torch.randn(2, 4, 8, 8)
    images = torch.zeros(2, 3, 64, 64)
    likelihoods = {"y": torch.full((2, 4, 4, 4), 0.5)}

    def loss(floor: float, quality: int) -> dict:
        objective = FeatureObjective(backbone, [0.05, 0.5], distill_weight=0.1, distill_floor=floor)
        output = {"f_hat": features + 0.3, "f_filtered": features, "features": features}
        return objective({**output, "likelihoods": likelihoods, "quality": quality}, images)

    low, low_floored = loss(0.0, 1), loss(0.25, 1)
    assert low["distill"] > 0
    extra = low_floored["loss"] - low["loss"]
    assert torch.isclose(extra, 0.05 * 0.1 * (0.25 / 0.05 - 1) * low["distill"])
    assert torch.equal(loss(0.0, 2)["loss"], loss(0.25, 2)["loss"])  # quality 2's λ 0.5 is above the floor
