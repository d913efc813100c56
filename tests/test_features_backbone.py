"""Issue 23, reproduction 5: a features file names its backbone in its metadata; that must not make `icm predict`
load (or download) a model. The backbone must be a registered feature codec's split backbone and the head digest
one of theirs — checked before anything loads — unless the user names the model; and ICM_OFFLINE=1 never
downloads."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import icmkit
import icmkit.pretrained.classifiers as classification
import icmkit.tasks.predict as predict_module
from icmkit.cli.main import app
from icmkit.codecs.base import FEATURES, FeatureMaps
from icmkit.codecs.registry import split_backbones
from icmkit.errors import IcmError, WeightsMismatchError
from icmkit.feature_io import save_features


def _features_file(path, backbone: str, split: str, digest: str, channels: int, stride: int):
    maps = FeatureMaps(
        tensors={FEATURES: torch.zeros(1, channels, 4, 4)},
        strides={FEATURES: stride},
        image_size=(4 * stride, 4 * stride),
        meta={"backbone": backbone, "split": split, "head_digest": digest},
    )
    save_features(maps, path)
    return path


@pytest.fixture()
def no_model_loads(monkeypatch):
    """Fail on any classifier load (a load is where torchvision / timm would download)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a classifier was loaded: {args}")

    monkeypatch.setattr(classification, "load_classifier", refuse)
    monkeypatch.setattr(predict_module, "_classifiers", {})
    monkeypatch.setattr(predict_module, "_splits", {})


def test_the_shipped_feature_codec_is_a_registered_split_backbone():
    digests = split_backbones()[("tf_efficientnet_lite0", "blocks.2")]
    assert len(next(iter(digests))) == 16


def test_a_features_file_naming_another_backbone_loads_nothing(tmp_path, no_model_loads):
    path = _features_file(tmp_path / "r50.safetensors", "resnet50", "layer1", "0123456789abcdef", 256, 4)
    with pytest.raises(IcmError, match="no registered feature codec uses") as caught:
        icmkit.predict(path)
    assert "--model" in str(caught.value)
    result = CliRunner().invoke(app, ["predict", str(path)], catch_exceptions=False, env={"ICM_OFFLINE": "1"})
    assert result.exit_code == 2 and "no registered feature codec uses" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_wrong_head_digest_is_refused_before_the_backbone_loads(tmp_path, no_model_loads):
    path = _features_file(tmp_path / "x.safetensors", "tf_efficientnet_lite0", "blocks.2", "0" * 16, 40, 8)
    with pytest.raises(WeightsMismatchError, match="registered feature codecs"):
        icmkit.predict(path)


def test_naming_the_model_loads_it_but_icm_offline_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("ICM_OFFLINE", "1")
    monkeypatch.setattr(predict_module, "_classifiers", {})
    monkeypatch.setattr(predict_module, "_splits", {})
    path = _features_file(tmp_path / "r50.safetensors", "resnet50", "layer1", "0123456789abcdef", 256, 4)
    # The user asked for resnet50 by name: its load is attempted, and refused offline (torch hub's cache is empty
    # here; the test's network guard would fail the test on any connection).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(IcmError, match="ICM_OFFLINE=1: not downloading"):
        icmkit.predict(path, model="resnet50")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(IcmError, match="ICM_OFFLINE=1: not downloading"):
        classification.load_classifier("timm:resnet18")
    from icmkit.tasks.detection import load_detector

    with pytest.raises(IcmError, match="ICM_OFFLINE=1: not downloading"):
        load_detector("fasterrcnn_resnet50_fpn")
