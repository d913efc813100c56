"""Training configs: YAML files, key=value overrides, field documentation, and the shipped configs/."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from icmkit.errors import ConfigError
from icmkit.train.config import TrainConfig, apply_overrides, describe_fields, load_config

from train_helpers import make_image_folder, write_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"), count=1)


def test_yaml_values_are_typed_and_overrides_come_last(image_folder, tmp_path):
    path = write_yaml(
        tmp_path / "c.yaml",
        data=str(image_folder),
        lr="1e-4",
        lmbda=1,
        steps=10,
        amp=False,
        mmd_bandwidths=[1, 2.5],
        perception_layers=["blocks.1"],
    )
    config = load_config(path, ["steps=20", "out=2024"])
    assert config.data.folders == [str(image_folder)]  # a lone folder is a one-item list
    assert (
        config.schedule.lr == 1e-4 and config.loss.lmbda == 1.0 and isinstance(config.loss.lmbda, float)
    )  # YAML reads 1e-4 as text
    assert config.schedule.steps == 20 and config.runtime.out == "2024" and config.runtime.amp is False
    assert config.loss.mmd_bandwidths == [1.0, 2.5] and config.loss.perception_layers == ["blocks.1"]


def test_empty_yaml_means_defaults(image_folder, tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing set\n")
    config = load_config(tmp_path / "empty.yaml", [f"data={image_folder}"])
    config.data.folders = []
    assert config == TrainConfig()


@pytest.mark.parametrize(
    "text, message",
    [
        ("lmbad: 0.01\n", "unknown field 'lmbad' (did you mean 'lmbda'?)"),
        ("steps: ten\n", "steps expects int, got 'ten'"),
        ("N: true\n", "N expects int, got True"),
        ("amp: 1\n", "amp expects bool, got 1"),
        ("lr: .nan\n", "lr must be finite"),
        ("data: {a: 1}\n", "unknown field 'data.a'"),  # a mapping under a section's name is that section
        ("data: 5\n", "data expects a list of str"),
        ("schedule: {lr: [1]}\n", "lr expects float"),
        ("steps: [1\n", "invalid YAML at line 2, column 1"),
        ("- steps\n- 3\n", "expected a mapping of field: value, got a list"),
    ],
)
def test_bad_yaml_is_refused_naming_file_and_field(text, message, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_config_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path)  # a folder
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(tmp_path / "binary.yaml")


def test_values_are_validated_after_loading(image_folder, tmp_path):
    path = write_yaml(tmp_path / "c.yaml", data=[str(image_folder)], crop=100)
    with pytest.raises(ConfigError, match="crop must be a multiple of 64"):
        load_config(path)
    with pytest.raises(ConfigError, match="device must be"):
        load_config(None, [f"data={image_folder}", "device=tpu"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("lmbda=abc", "override 'lmbda=abc': lmbda expects float"),
        ("tensorboard=yes", "tensorboard expects bool"),
        ("nope=1", "unknown field 'nope'"),
        ("batch_size", "expected key=value"),
    ],
)
def test_bad_overrides_name_themselves(override, message, image_folder):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        apply_overrides(TrainConfig.from_flat(data=[str(image_folder)]), [override])


def test_list_overrides_take_commas_or_json(image_folder):
    overrides = ["mmd_bandwidths=0.5,1", 'perception_layers=["a"]']
    config = apply_overrides(TrainConfig.from_flat(data=[str(image_folder)]), overrides)
    assert config.loss.mmd_bandwidths == [0.5, 1.0] and config.loss.perception_layers == ["a"]


def test_every_field_is_documented():
    rows = describe_fields()
    sections = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sections == ["data", "model", "loss", "schedule", "runtime", "ssl"]
    expected = [f"{s}.{f.name}" for s in sections for f in dataclasses.fields(type(getattr(TrainConfig(), s)))]
    assert [r["section"] for r in rows] == expected
    assert len({r["name"] for r in rows}) == len(rows)  # flat keys are unique: each names one field
    assert all(len(r["doc"]) > 10 and r["type"] and r["default"] for r in rows)
    assert {r["name"]: r["type"] for r in rows}["data"] == "list[str]"


def test_shipped_configs_load(image_folder):
    found = {path.name: path for path in sorted(CONFIGS.glob("*.yaml"))}
    assert {"smoke.yaml", "smoke-dicm.yaml", "icm-mse.yaml", "icm-mmd.yaml", "icm-dicm-lite0.yaml"} <= set(found)
    for path in found.values():
        load_config(path, [f"data={image_folder}"])  # the shared training folders may be absent here
    smoke = load_config(found["smoke.yaml"])  # its data is the bundled photos: valid anywhere
    assert all(folder.is_dir() for folder in smoke.data_folders())
    mse, mmd = (load_config(found[name], [f"data={image_folder}"]) for name in ("icm-mse.yaml", "icm-mmd.yaml"))
    assert tuple(mse.get(k) for k in ("architecture", "N", "M", "crop", "batch_size", "beta")) == (
        "variable-rate-hyperprior",
        64,
        160,
        256,
        8,
        0,
    )
    assert len(mse.loss.lmbdas) >= 6 and mse.loss.lmbdas == sorted(mse.loss.lmbdas)
    # The ablation: the MMD recipe is the MSE recipe plus the perception term (its weights, samples, distillation).
    perception = ("beta", "mmd_samples", "perception_layers", "perception_layer_weights", "distill_weight")
    assert (mmd.loss.beta, mmd.loss.mmd_samples) == (5.0, 512) and mmd.loss.distill_weight > 0
    for key in (*perception, "out"):
        mmd.set(key, mse.get(key))
    assert mmd == mse


def test_no_data_default_assumes_a_folder_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # wherever it runs from, the default names no folder
    assert TrainConfig().data.folders == []
    assert {r["name"]: r["default"] for r in describe_fields()}["data"] == "[]"  # what --list-fields shows
    with pytest.raises(ConfigError, match="no training data: name image folders with data="):
        load_config(None, [])


def test_sections_nest_by_concern_and_flat_keys_still_name_each_field(image_folder, tmp_path):
    """A YAML file by section and one with flat keys give the same config; a dotted override reaches a field;
    the saved form is flat and round-trips."""
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        f"data: {{folders: [{image_folder}], crop: 128}}\nschedule: {{lr: 2.0e-4, steps: 9}}\nruntime: {{amp: false}}\n"
    )
    flat = tmp_path / "flat.yaml"
    flat.write_text(f"data: [{image_folder}]\ncrop: 128\nlr: 2.0e-4\nsteps: 9\namp: false\n")
    a, b = load_config(nested), load_config(flat)
    assert a == b and a.data.crop == 128 and a.schedule.lr == 2e-4 and a.runtime.amp is False
    assert load_config(flat, ["schedule.steps=11", "ssl_queue=64"]).schedule.steps == 11
    assert load_config(flat, ["ssl.queue=64"]).ssl.queue == 64
    saved = json.loads(a.to_json())
    assert saved["lr"] == 2e-4 and saved["ssl_queue"] == a.ssl.queue and "schedule" not in saved
    assert TrainConfig.from_flat(saved) == a


def test_flat_attributes_are_deprecated_aliases():
    config = TrainConfig()
    with pytest.warns(DeprecationWarning, match="schedule.lr"):
        assert config.lr == config.schedule.lr
    with pytest.warns(DeprecationWarning, match="ssl.queue"):
        config.ssl_queue = 64
    assert config.ssl.queue == 64
    with pytest.warns(DeprecationWarning, match="data.folders"):
        config.data = ["a"]  # `data` names the section now; a list given to it is still the folders
    assert config.data.folders == ["a"]
    with pytest.raises(AttributeError):
        config.no_such_field  # noqa: B018


def test_architectures_are_the_registrys():
    from icmkit.models import ARCHITECTURES

    with pytest.raises(ConfigError, match="unknown architecture 'nope'; known: " + ", ".join(ARCHITECTURES)):
        TrainConfig.from_flat(data=["x"], architecture="nope").validate()
