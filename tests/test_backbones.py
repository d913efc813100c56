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


def test_folding_the_tails_batch_norms_keeps_its_outputs(one_torch_thread):
    from icmkit.backbones.fold import fold_batch_norms

    torch.manual_seed(0)
    split = split_classifier("tf_efficientnet_lite0", "blocks.2", weights=None).eval()
    for module in split.tail.modules():  # random but non-trivial statistics, so that folding has work to do
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 40, 16, 16)
    logits, stages = split.tail(x, return_stages=True)
    count = fold_batch_norms(split.tail, x)
    folded_logits, folded_stages = split.tail(x, return_stages=True)
    assert count > 10 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in split.tail.modules())
    assert torch.allclose(folded_logits, logits, atol=1e-4, rtol=1e-4)
    assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(folded_stages, stages))
    assert not any(p.requires_grad for p in split.tail.parameters())  # frozen stays frozen


def test_the_encoders_copy_of_a_head_is_folded_channels_last_and_leaves_the_head_as_it_was(one_torch_thread):
    from icmkit.backbones.fold import inference_copy

    torch.manual_seed(0)
    split = split_classifier("tf_efficientnet_lite0", "blocks.2", weights=None).eval()
    for module in split.head.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2)
    x = split.normalize(torch.rand(1, 3, 96, 64))
    expected = split.head(x)
    fast = inference_copy(split.head, torch.zeros(1, 3, 64, 64))
    out = fast(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in split.head.modules())  # the original is untouched
    assert torch.equal(split.head(x), expected)
    convolution = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)


def test_folding_skips_norms_that_do_not_follow_a_convolution():
    from icmkit.backbones.fold import fold_batch_norms

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, bias=True), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.BatchNorm2d(4)
    ).eval()
    net[1].running_mean.fill_(0.3)
    net[3].running_var.fill_(4.0)
    x = torch.randn(1, 3, 8, 8)
    expected = net(x)
    assert fold_batch_norms(net, x) == 1
    assert isinstance(net[1], torch.nn.Identity) and isinstance(net[3], torch.nn.BatchNorm2d)
    assert torch.allclose(net(x), expected, atol=1e-5)
