"""The exact-integer fast path (int8 digit GEMMs) against the float64 reference, at the bounds it states."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from icmkit.layers import integer
from icmkit.layers.integer import ACT_LIMIT, MAX_FAN_IN, ExactIntegerNet, reference_convolutions, signed_digit_planes

from helpers.threads import at_thread_counts


def _quantized(template: nn.Sequential, seed: int = 0, weight_scale: float = 1.0) -> ExactIntegerNet:
    torch.manual_seed(seed)
    for layer in template:
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.uniform_(layer.weight, -weight_scale, weight_scale)
            nn.init.uniform_(layer.bias, -weight_scale, weight_scale)
    net = ExactIntegerNet(template)
    net.quantize_from(template)
    return net


NETS = {
    "hyper-synthesis": lambda: nn.Sequential(
        nn.ConvTranspose2d(8, 8, 5, 2, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 6, 5, 2, 2, 1),
        nn.ReLU(),
        nn.Conv2d(6, 10, 3, padding=1),
    ),
    "context-5x5": lambda: nn.Sequential(nn.Conv2d(16, 12, 5, padding=2)),
    "strided": lambda: nn.Sequential(nn.Conv2d(5, 7, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(7, 4, 1)),
    "entropy-parameters-1x1": lambda: nn.Sequential(nn.Conv2d(24, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 1)),
    "transposed-4-stride-3": lambda: nn.Sequential(nn.ConvTranspose2d(3, 5, 4, stride=3, padding=1, output_padding=2)),
}


def _inputs(channels: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (2, channels, 5, 7)
    return {
        "random at the activation limit": torch.randint(-ACT_LIMIT, ACT_LIMIT + 1, shape, generator=generator).double(),
        "all +limit": torch.full(shape, float(ACT_LIMIT), dtype=torch.float64),
        "all -limit": torch.full(shape, -float(ACT_LIMIT), dtype=torch.float64),
        "digit edges": torch.tensor([-128, 127, 128, -129, 32767, -32768, 32768, -32769], dtype=torch.float64)
        .repeat(2 * channels * 35 // 8 + 1)[: 2 * channels * 35]
        .reshape(shape),
        "small latents": torch.randint(-20, 21, shape, generator=generator).double() * 256,
        "zeros": torch.zeros(shape, dtype=torch.float64),
        "beyond the limit (first layer only)": torch.randint(-(2**26), 2**26, shape, generator=generator).double(),
    }


@pytest.mark.parametrize("name", sorted(NETS))
def test_fast_path_equals_the_float64_reference_at_the_bounds(name):
    template = NETS[name]()
    channels = template[0].in_channels
    for weight_scale in (1.0, 1e-3):  # shifts of both signs: large weights scale down, small ones up
        net = _quantized(template, weight_scale=weight_scale)
        for label, x in _inputs(channels, seed=1).items():
            assert net._fast_path_exact(x), label  # the integer path really runs
            fast, reference = net(x), net(x, reference=True)
            assert torch.equal(fast, reference), f"{name}, {label}: differs by {(fast - reference).abs().max()}"


def test_fast_path_is_independent_of_threads_and_batch():
    net = _quantized(NETS["context-5x5"]())
    x = _inputs(16, seed=2)["random at the activation limit"]
    one, two = at_thread_counts(lambda: net(x))
    assert torch.equal(one, two) and torch.equal(net(x[1:]), one[1:])


def test_largest_fan_in_keeps_int32_sums_exact():
    """A 3×3 convolution of fan-in just under MAX_FAN_IN with input and weight digits at their extremes (−128, and
    127 against −128): the GEMM's int32 sums reach fan_in · 2**14 ≈ 2**27, what the bound allows."""
    channels = MAX_FAN_IN // 9
    template = nn.Sequential(nn.Conv2d(channels, 2, 3, padding=1))
    net = _quantized(template)
    with torch.no_grad():
        net.weight0.fill_(-1920)  # digits (−128, −7)
        net.weight0[1].fill_(1919)  # digits (127, 7)
    x = torch.full((1, channels, 3, 3), -32896.0, dtype=torch.float64)  # digits (−128, −128)
    assert torch.equal(net(x), net(x, reference=True))


def test_reference_when_the_float64_bound_would_break():
    net = _quantized(NETS["context-5x5"]())
    huge = torch.full((1, 16, 4, 4), 2.0**45, dtype=torch.float64)
    assert not net._fast_path_exact(huge)  # |x| · 2**11 · 400 ≥ 2**53: the reference (and its semantics) runs
    assert torch.equal(net(huge), net(huge, reference=True))


def test_reference_convolutions_switch_forces_float64(monkeypatch):
    net = _quantized(NETS["strided"]())
    calls = []
    monkeypatch.setattr(integer, "integer_convolution", lambda *a, **k: calls.append(1) or None)
    with reference_convolutions():
        net(torch.zeros(1, 5, 4, 4, dtype=torch.float64))
    assert calls == []


def test_weights_reloaded_take_effect():
    """The digit matrices are derived once per version of the buffers: loading other weights must not reuse them."""
    first, second = _quantized(NETS["context-5x5"](), seed=0), _quantized(NETS["context-5x5"](), seed=1)
    x = _inputs(16, seed=3)["small latents"]
    first(x)  # derives the digits of the first weights
    first.load_state_dict(second.state_dict())
    assert torch.equal(first(x), second(x, reference=True))


@pytest.mark.parametrize("values", [[0], [-128, 127], [128, -129], [2**22, -(2**22)], [2**40 + 3, -(2**40) - 5]])
def test_signed_digit_planes_are_int8_and_recombine(values):
    tensor = torch.tensor(values, dtype=torch.int64)
    planes = signed_digit_planes(tensor)
    assert planes.dtype == torch.int8
    rebuilt = sum(planes[k].long() * 256**k for k in range(len(planes)))
    assert torch.equal(rebuilt, tensor)
    assert len(planes) == 1 or planes[-1].abs().max() > 0  # no empty top plane
