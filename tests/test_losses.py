import itertools
import math

import pytest
import torch
from torch import nn

from icmkit.losses import CodecObjective, Distortion, FeatureTap, PerceptionConsistencyLoss, mmd2_unbiased
from icmkit.losses.mmd import squared_distances
from icmkit.losses.perception import position_samples


def brute_force_mmd2(x, y, multipliers, bandwidth):
    def k(a, b):
        d = float(((a - b) ** 2).sum())
        return sum(math.exp(-d / (s * bandwidth)) for s in multipliers) / len(multipliers)

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_matches_brute_force_on_tiny_inputs():
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64) + 0.5,
    )
    multipliers = (0.5, 1.0, 2.0)
    pooled = torch.cat([x, y])
    d = squared_distances(pooled, pooled)
    median = float(d[~torch.eye(9, dtype=torch.bool)].median())
    expected = brute_force_mmd2(x, y, multipliers, median)
    assert float(mmd2_unbiased(x, y, multipliers)) == pytest.approx(expected, rel=1e-9)
    assert float(mmd2_unbiased(x, y, multipliers, bandwidth=0.7)) == pytest.approx(
        brute_force_mmd2(x, y, multipliers, 0.7), rel=1e-9
    )


def test_same_distribution_is_near_zero_and_shifts_are_positive():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 8, generator=g)
    same = torch.randn(400, 8, generator=g)
    assert -2 / 400 <= float(mmd2_unbiased(x, x.clone())) <= 0  # identical sets: in [−2/m, 0]
    assert abs(float(mmd2_unbiased(x, same))) < 0.01
    shifted = float(mmd2_unbiased(x, same + 1.0))
    rescaled = float(mmd2_unbiased(x, same * 2.0))
    assert shifted > 0.1 and rescaled > 0.05
    assert shifted > 20 * abs(float(mmd2_unbiased(x, same)))


def test_bad_sample_shapes_are_refused():
    with pytest.raises(ValueError):
        mmd2_unbiased(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError):
        mmd2_unbiased(torch.randn(1, 3), torch.randn(4, 3))


def test_position_samples_are_channel_vectors():
    f = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    s = position_samples(f)
    assert s.shape == (8, 3)
    assert torch.equal(s[0], f[0, :, 0, 0]) and torch.equal(s[7], f[1, :, 1, 1])


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.stage(self.stem(x)).mean((2, 3)))


def tiny_perception(**kwargs):
    torch.manual_seed(0)
    tap = FeatureTap(TinyNet(), ["stem", "stage"], mean=(0.5,) * 3, std=(0.25,) * 3)
    return PerceptionConsistencyLoss(tap, samples=64, **kwargs)


def test_gradients_reach_the_codec_not_the_frozen_network():
    loss = tiny_perception(distill_weight=1.0)
    codec = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 16, 16)
    parts = loss(codec(x).sigmoid(), x)
    assert set(parts) == {"mmd/stem", "mmd/stage", "distill", "perception"}
    parts["perception"].backward()
    assert codec.weight.grad is not None and codec.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.tap.net.parameters())


def test_frozen_network_stays_in_eval_mode():
    loss = tiny_perception()
    objective = CodecObjective(0.01, beta=1.0, perception=loss)
    objective.train()
    assert not loss.tap.net.training
    running = loss.tap.net.stem[1].running_mean.clone()
    loss(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))
    assert torch.equal(running, loss.tap.net.stem[1].running_mean)


def test_identical_images_have_no_perception_loss_and_distorted_ones_do():
    loss = tiny_perception()
    loss.samples = 512
    x = torch.rand(4, 3, 32, 32)
    identical = loss(x.clone(), x)
    # Unbiased MMD² of a sample with itself lies in [−2/m, 0] (the cross term keeps its diagonal of ones).
    for name, m in (("stem", 512), ("stage", 4 * 8 * 8)):
        assert -2 / m - 1e-6 <= float(identical[f"mmd/{name}"]) <= 1e-6
    blurred = nn.functional.avg_pool2d(x, 5, 1, 2)
    assert float(loss(blurred, x)["perception"]) > 10 * abs(float(identical["perception"]))


def test_unknown_layers_and_weight_counts_are_refused():
    with pytest.raises(ValueError, match="unknown layer"):
        FeatureTap(TinyNet(), ["nope"], mean=(0.5,) * 3, std=(0.5,) * 3)
    tap = FeatureTap(TinyNet(), ["stem"], mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match="layer weights"):
        PerceptionConsistencyLoss(tap, layer_weights=[1.0, 2.0])


def test_objective_composes_rate_distortion_and_perception():
    x = torch.rand(2, 3, 16, 16)
    output = {"x_hat": (x + 0.1).clamp(0, 1), "likelihoods": {"y": torch.full((2, 4, 2, 2), 0.5)}}
    plain = CodecObjective(0.01)(output, x)
    bpp = 2 * 4 * 2 * 2 / (2 * 16 * 16)
    assert float(plain["bpp"]) == pytest.approx(bpp)
    assert float(plain["loss"]) == pytest.approx(bpp + 0.01 * 255**2 * float(plain["mse"]), rel=1e-5)
    perceptual = CodecObjective(0.01, beta=2.0, perception=tiny_perception())(output, x)
    assert float(perceptual["loss"]) == pytest.approx(
        float(plain["loss"]) + 2.0 * float(perceptual["perception"]), rel=1e-5
    )
    with pytest.raises(ValueError):
        CodecObjective(0.01, beta=1.0)


def test_ms_ssim_distortion():
    x = torch.rand(1, 3, 192, 192)
    d = Distortion("ms-ssim")
    assert float(d(x, x)) == pytest.approx(0.0, abs=1e-5)
    assert float(d(nn.functional.avg_pool2d(x, 5, 1, 2), x)) > 0.01
    with pytest.raises(ValueError):
        Distortion("l1")
