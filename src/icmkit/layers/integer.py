"""Exact integer evaluation of the small network that predicts entropy parameters.

Why: a learned decoder must derive the *same* probability tables as the encoder, bit for bit, or the
stream decodes to garbage. Floating-point convolutions give results that depend on the thread count,
batch size, CPU vendor and GPU — CompressAI's most reported failure (issues #279, #309, #340). Following
Ballé et al., "Integer networks for data compression" (ICLR 2019), the hyper-synthesis is evaluated on
integers: weights are fixed-point with a per-output-channel power-of-two scale, activations carry
``ACT_FRAC_BITS`` fractional bits, and every convolution runs in float64 on integer values whose partial
sums stay below 2**53 — so every result is exact and independent of summation order, on any IEEE-754
machine. Rescaling multiplies by a power of two and floors, which is also exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACT_FRAC_BITS = 8  # activations are integers in units of 2**-8
WEIGHT_BITS = 12  # |weight| ≤ 2**11 after scaling: stored as int16
ACT_LIMIT = 2**22  # clamp keeps |sum| < 2**(22 + 11 + 13) < 2**53 for fan-in ≤ 8192


class ExactIntegerNet(nn.Module):
    """Integer twin of an ``nn.Sequential`` of ``Conv2d`` / ``ConvTranspose2d`` / ``ReLU`` layers.

    Input and output are float64 tensors holding integers in units of ``2**-ACT_FRAC_BITS``; use
    :meth:`to_fixed` / :meth:`from_fixed` to convert.

    Args:
        template: The float network to mirror (plain convolutions with bias, and ReLUs). Its layers shape
            zero buffers, so that a state dict can be loaded into this net; :meth:`quantize_from` fills them.
    """

    def __init__(self, template: nn.Sequential):
        super().__init__()
        self._ops: list[tuple[str, dict]] = []
        for i, layer in enumerate(template):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                transposed = isinstance(layer, nn.ConvTranspose2d)
                if layer.groups != 1 or layer.dilation != (1, 1) or layer.bias is None:
                    raise ValueError("ExactIntegerNet supports plain convolutions with bias only")
                fan_in = layer.weight[0].numel() if not transposed else layer.weight[:, 0].numel()
                if fan_in > 8192:
                    raise ValueError(f"layer {i}: fan-in {fan_in} too large for exact float64 sums")
                out_ch = layer.out_channels
                self.register_buffer(f"weight{i}", torch.zeros(layer.weight.shape, dtype=torch.int16))
                self.register_buffer(f"bias{i}", torch.zeros(out_ch, dtype=torch.int64))
                self.register_buffer(f"shift{i}", torch.zeros(out_ch, dtype=torch.int32))
                args = {"stride": layer.stride, "padding": layer.padding}
                if transposed:
                    args["output_padding"] = layer.output_padding
                self._ops.append(("deconv" if transposed else "conv", {"index": i, **args}))
            elif isinstance(layer, nn.ReLU):
                self._ops.append(("relu", {}))
            else:
                raise ValueError(f"ExactIntegerNet cannot represent {type(layer).__name__}")

    @torch.no_grad()
    def quantize_from(self, template: nn.Sequential) -> None:
        for kind, args in self._ops:
            if kind == "relu":
                continue
            i = args["index"]
            layer = template[i]
            weight = layer.weight.detach().double()
            channel_dim = 1 if kind == "deconv" else 0
            per_channel = weight.abs().transpose(0, channel_dim).reshape(weight.shape[channel_dim], -1).amax(1)
            shifts = torch.tensor(
                [WEIGHT_BITS - 1 - math.ceil(math.log2(m)) if m > 0 else 0 for m in per_channel.tolist()],
                dtype=torch.int32,
            )
            view = [1] * weight.ndim
            view[channel_dim] = -1
            scale = torch.pow(2.0, shifts.double()).reshape(view)
            getattr(self, f"weight{i}").copy_(torch.round(weight * scale).to(torch.int16))
            bias_scale = torch.pow(2.0, (shifts + ACT_FRAC_BITS).double())
            getattr(self, f"bias{i}").copy_(torch.round(layer.bias.detach().double() * bias_scale).to(torch.int64))
            getattr(self, f"shift{i}").copy_(shifts)

    def weight_buffers_set(self) -> bool:
        """True once :meth:`quantize_from` (or a loaded state dict) filled the shifts or weights. The shifts (one
        per output channel) are looked at first: every coding call checks this, and scanning the weights costs
        milliseconds."""
        buffers = dict(self.named_buffers())
        shifts = (buf for name, buf in buffers.items() if name.startswith("shift"))
        weights = (buf for name, buf in buffers.items() if name.startswith("weight"))
        return any(bool(buf.any()) for buf in shifts) or any(bool(buf.any()) for buf in weights)

    @staticmethod
    def to_fixed(x: torch.Tensor) -> torch.Tensor:
        """Integer-valued tensor (e.g. quantised latents) → fixed-point float64 input."""
        return x.double() * (1 << ACT_FRAC_BITS)

    @staticmethod
    def from_fixed(x: torch.Tensor) -> torch.Tensor:
        return x / (1 << ACT_FRAC_BITS)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        for kind, args in self._ops:
            if kind == "relu":
                x = x.clamp_min(0)
                continue
            i = args["index"]
            weight = getattr(self, f"weight{i}").double()
            if kind == "deconv":
                x = F.conv_transpose2d(
                    x, weight, stride=args["stride"], padding=args["padding"], output_padding=args["output_padding"]
                )
            else:
                x = F.conv2d(x, weight, stride=args["stride"], padding=args["padding"])
            x = x + getattr(self, f"bias{i}").double().reshape(1, -1, 1, 1)
            rescale = torch.pow(2.0, -getattr(self, f"shift{i}").double()).reshape(1, -1, 1, 1)
            x = torch.floor(x * rescale + 0.5).clamp_(-ACT_LIMIT, ACT_LIMIT)
        return x
