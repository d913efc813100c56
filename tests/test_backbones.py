"""Backbone split: head and tail reproduce the unsplit classifier exactly, with recorded channels and stride."""

import pytest
import torch

from icmkit.backbones import SplitError, split_classifier, split_stages
from icmkit.tasks.classification import load_classifier


@pytest.fixture(scope="module")
def lite0(one_torch_thread):
    return load_classifier("tf_efficientnet_lite0")


@pytest.mark.parametrize(
    ("stage", "channels", "stride"), [("blocks.1", 24, 4), ("blocks.2", 40, 8), ("blocks.4", 112, 16)]
)
def test_lite0_split_equals_the_unsplit_model(lite0, stage, channels, stride):
    split = split_classifier("tf_efficientnet_lite0", stage)
    assert (split.info.channels, split.info.stride, split.info.stage) == (channels, stride, stage)
    assert split.info.mean == (0.5, 0.5, 0.5) and len(split.info.head_digest) == 8
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        features = split.head(split.normalize(x))
        assert features.shape == (2, channels, 224 // stride, 224 // stride)
        assert torch.equal(split.tail(features), lite0.model(split.normalize(x)))


def test_resnet50_split_after_layer1_on_random_weights(one_torch_thread):
    torch.manual_seed(0)
    reference = load_classifier("resnet50", weights=None)
    from icmkit.backbones import SplitBackbone

    config = reference.preprocess_config
    split = SplitBackbone("resnet50", reference.model, "layer1", config.mean, config.std)
    assert (split.info.channels, split.info.stride) == (256, 4)
    assert split.tail.stage_names == ["layer2", "layer3", "layer4"]
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        logits, stages = split.tail(split.head(x), return_stages=True)
        assert torch.equal(logits, reference.model(x))
    assert [s.shape[1] for s in stages] == [512, 1024, 2048]
    assert split_stages(reference.model) == ["layer1", "layer2", "layer3", "layer4"]


def test_head_digest_names_the_head_weights():
    default = split_classifier("tf_efficientnet_lite0", "blocks.2")
    assert split_classifier("tf_efficientnet_lite0", "blocks.2").info.head_digest == default.info.head_digest
    torch.manual_seed(1)
    assert (
        split_classifier("tf_efficientnet_lite0", "blocks.2", weights=None).info.head_digest != default.info.head_digest
    )
    # Only the head counts: the digest of an earlier split differs, a later stage's weights do not enter it.
    assert split_classifier("tf_efficientnet_lite0", "blocks.1").info.head_digest != default.info.head_digest


def test_split_stays_frozen():
    split = split_classifier("tf_efficientnet_lite0", "blocks.2")
    split.train()
    assert not split.training and not split.head.training
    assert not any(p.requires_grad for p in split.parameters())


def test_unknown_stage_and_unsupported_model_are_refused():
    with pytest.raises(SplitError, match="no stage 'layer9'"):
        split_classifier("tf_efficientnet_lite0", "layer9")
    from icmkit.backbones import SplitBackbone

    with pytest.raises(SplitError, match="cannot split"):
        SplitBackbone("mlp", torch.nn.Sequential(torch.nn.Linear(3, 3)), "0", (0, 0, 0), (1, 1, 1))
