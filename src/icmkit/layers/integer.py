"""Exact integer evaluation of the small network that predicts entropy parameters.

Why: a learned decoder must derive the *same* probability tables as the encoder, bit for bit, or the
stream decodes to garbage. Floating-point convolutions give results that depend on the thread count,
batch size, CPU vendor and GPU — CompressAI's most reported failure (issues #279, #309, #340). Following
Ballé et al., "Integer networks for data compression" (ICLR 2019), the hyper-synthesis is evaluated on
integers: weights are fixed-point with a per-output-channel power-of-two scale, activations carry
``ACT_FRAC_BITS`` fractional bits, and every convolution's result is the exact integer sum — so it is
independent of summation order, thread count and machine. Rescaling multiplies by a power of two and floors,
which is also exact.

Two ways to get the exact sums, with identical results:

- the reference: float64 convolutions on the integers; partial sums stay below 2**53, so every one is exact. On
  the CPU these run in PyTorch's generic ``slow_conv2d`` (float64 has no oneDNN kernel).
- the fast path (:func:`integer_convolution`, CPU only): activations and weights split into balanced signed 8-bit
  digits (int8), every pair of digit planes multiplied in one int8 × int8 → int32 GEMM (``torch._int_mm``: VNNI /
  AMX where the CPU has them), the digit products recombined with their powers of two in int64. Integer
  arithmetic is exact in any order as long as nothing overflows: |digit| ≤ 2**7, so every int32 partial sum is
  at most ``fan_in · 2**14`` in magnitude — below 2**31 for ``fan_in`` < 2**17 (the nets allow 8192) — and the
  recombined sum obeys the reference's 2**53 bound (checked on every call, else the reference runs). 1×1 layers
  stay one float64 GEMM (exact by the same bound, and faster there than four to six digit GEMMs). No library
  offers an exact integer convolution on the CPU (PyTorch's quantized kernels requantise their int32 sums),
  hence the im2col here.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

ACT_FRAC_BITS = 8  # activations are integers in units of 2**-8
WEIGHT_BITS = 12  # |weight| ≤ 2**11 after scaling: stored as int16
ACT_LIMIT = 2**22  # clamp keeps |sum| < 2**(22 + 11 + 13) < 2**53 for fan-in ≤ 8192
DIGIT_BITS = 8  # int8 digits of activations and weights (a 12-bit weight is two)
INT32_BITS = 31  # magnitude bits of the GEMM's int32 sums
FLOAT64_EXACT_BITS = 53
MAX_FAN_IN = 8192
# The GEMM's int32 sums: |digit| ≤ 2**7 on both sides, so at most MAX_FAN_IN · 2**14 in magnitude.
assert MAX_FAN_IN * 2 ** (2 * (DIGIT_BITS - 1)) < 2**INT32_BITS
_reference_only = [False]  # set by reference_convolutions()


@contextlib.contextmanager
def reference_convolutions():
    """Within this block every :class:`ExactIntegerNet` uses the float64 reference (benchmarks, tests)."""
    _reference_only[0] = True
    try:
        yield
    finally:
        _reference_only[0] = False


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
                if fan_in > MAX_FAN_IN:
                    raise ValueError(f"layer {i}: fan-in {fan_in} too large for exact float64 sums")
                out_ch = layer.out_channels
                self.register_buffer(f"weight{i}", torch.zeros(layer.weight.shape, dtype=torch.int16))
                self.register_buffer(f"bias{i}", torch.zeros(out_ch, dtype=torch.int64))
                self.register_buffer(f"shift{i}", torch.zeros(out_ch, dtype=torch.int32))
                args = {"stride": layer.stride, "padding": layer.padding, "kernel": layer.kernel_size, "fan_in": fan_in}
                if transposed:
                    args["output_padding"] = layer.output_padding
                self._ops.append(("deconv" if transposed else "conv", {"index": i, **args}))
            elif isinstance(layer, nn.ReLU):
                self._ops.append(("relu", {}))
            else:
                raise ValueError(f"ExactIntegerNet cannot represent {type(layer).__name__}")
        self._integer_layers: dict[int, tuple] = {}  # layer → (its buffers' identity and version, GEMM terms)
        # Fixed by the architecture, so decided once: transposed convolutions must unfold to plain ones (padding
        # ≤ kernel − 1), and the first layer's fan-in bounds the sums of an unclamped input.
        self._unfoldable = all(
            kind != "deconv" or all(k - 1 >= p for k, p in zip(args["kernel"], args["padding"]))
            for kind, args in self._ops
        )
        self._first_fan_in = next(args["fan_in"] for kind, args in self._ops if kind != "relu")

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
    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """Run the integer net on fixed-point ``x``; ``reference`` forces float64 convolutions (same result)."""
        x = x.double()
        if reference or _reference_only[0] or not self._fast_path_exact(x):
            return self._forward_reference(x)
        return self._forward_integer(x)

    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        for kind, args in self._ops:
            if kind == "relu":
                x = x.clamp_min(0)
                continue
            i = args["index"]
            options = {k: v for k, v in args.items() if k not in ("index", "kernel", "fan_in")}
            convolve = F.conv_transpose2d if kind == "deconv" else F.conv2d
            x = convolve(x, getattr(self, f"weight{i}").double(), **options)
            x = x + getattr(self, f"bias{i}").double().reshape(1, -1, 1, 1)
            rescale = torch.pow(2.0, -getattr(self, f"shift{i}").double()).reshape(1, -1, 1, 1)
            x = torch.floor(x * rescale + 0.5).clamp_(-ACT_LIMIT, ACT_LIMIT)
        return x

    def _fast_path_exact(self, x: torch.Tensor) -> bool:
        """Whether the integer path gives the reference's sums for ``x`` (see the module's doc): on the CPU, with
        transposed convolutions that unfold to plain ones, and the first layer's sums below 2**53 — every later
        layer's input is clamped to ``ACT_LIMIT``, which keeps its sums there for any fan-in up to ``MAX_FAN_IN``."""
        if x.device.type != "cpu" or x.numel() == 0 or not self._unfoldable:
            return False
        return float(x.abs().max()) * 2 ** (WEIGHT_BITS - 1) * self._first_fan_in < 2**FLOAT64_EXACT_BITS

    def _forward_integer(self, x: torch.Tensor) -> torch.Tensor:
        values = x.long().permute(0, 2, 3, 1)  # channels last: a 1×1 convolution is then one GEMM
        for kind, args in self._ops:
            if kind == "relu":
                values = values.clamp_min(0)
                continue
            matrix, weight_digits, bias, add, right, left = self._integer_layer(kind, args)
            if matrix.dtype == torch.float64:  # a 1×1 convolution: one float64 GEMM, exact by the 2**53 bound
                values = (values.double() @ matrix).long()
            elif kind == "deconv":
                values, padding = _transposed_as_convolution_input(values, args)
                values = integer_convolution(values, matrix, weight_digits, args["kernel"], (1, 1), padding)
            else:
                values = integer_convolution(
                    values, matrix, weight_digits, args["kernel"], args["stride"], args["padding"]
                )
            # floor((sum + bias) · 2**-shift + 1/2), as the reference rounds, in integer arithmetic
            values = (((values + bias + add) >> right) << left).clamp_(-ACT_LIMIT, ACT_LIMIT).int()
        return values.permute(0, 3, 1, 2).double().contiguous()

    def _integer_layer(self, kind: str, args: dict) -> tuple:
        """A layer's GEMM weights and rescaling terms, derived once per version of its buffers."""
        i = args["index"]
        weight, bias, shift = (getattr(self, f"{name}{i}") for name in ("weight", "bias", "shift"))
        key = tuple((t.data_ptr(), t._version) for t in (weight, bias, shift))
        cached = self._integer_layers.get(i)
        if cached is None or cached[0] != key:
            as_convolution = weight.flip(-2, -1).transpose(0, 1) if kind == "deconv" else weight
            pointwise = kind == "conv" and tuple(args["kernel"]) == (1, 1) and tuple(args["stride"]) == (1, 1)
            if pointwise:  # measured: float64 GEMM beats four to six int8 GEMMs of digits at 1×1
                matrices = (weight.double().flatten(1).t().contiguous(), 0)
            else:
                matrices = weight_digit_matrix(as_convolution)
            shift = shift.long()
            rounding = torch.where(shift > 0, torch.ones_like(shift) << (shift - 1).clamp_min(0), 0)
            cached = (
                key,
                (*matrices, bias, rounding, shift.clamp_min(0), (-shift).clamp_min(0)),
            )
            self._integer_layers[i] = cached
        return cached[1]


def signed_digit_planes(values: torch.Tensor) -> torch.Tensor:
    """Integer ``values`` as int8 planes ``(K, *values.shape)`` of balanced base-256 digits, least significant
    first: ``values = Σ_k planes[k] · 256**k``, with as few planes as the values need. The balanced digits of v are
    the plain base-256 digits of u = v + 128·(1 + 256 + … + 256**(K-1)), each less 128; a plain digit b becomes
    b − 128 as the int8 that has the bits of b XOR 128."""
    low, high = (int(v) for v in torch.aminmax(values))
    count = 1
    while not (-_digit_offset(count) <= low and high < 256**count - _digit_offset(count)):
        count += 1
    wide = torch.int32 if 256**count <= 2**31 else torch.int64  # u < 256**count: int32 while it fits
    shifts = torch.arange(0, DIGIT_BITS * count, DIGIT_BITS, dtype=wide).reshape(count, *[1] * values.ndim)
    digits = (values.to(wide) + _digit_offset(count)).unsqueeze(0) >> shifts
    return (digits.to(torch.uint8) ^ 128).view(torch.int8)  # to uint8 keeps the low 8 bits


def _digit_offset(count: int) -> int:
    return 128 * (256**count - 1) // 255


def weight_digit_matrix(weight: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A convolution's integer weights ``(out, in, kh, kw)`` as the GEMM's right-hand side: int8 digits
    ``(kh·kw·in, digits·out)`` (rows in the order of a channels-last im2col, the digits side by side), and the
    digit count."""
    planes = signed_digit_planes(weight.permute(0, 2, 3, 1))  # (K, out, kh, kw, in)
    return planes.reshape(len(planes) * weight.shape[0], -1).t().contiguous(), len(planes)


def integer_convolution(values, matrix: torch.Tensor, weight_digits: int, kernel, stride, padding) -> torch.Tensor:
    """The exact sums of ``conv2d`` (no bias) of channels-last int64 ``values`` ``(N, H, W, C)`` with the weights of
    :func:`weight_digit_matrix`, channels last: every digit plane of the values against every weight digit in one
    int8 × int8 → int32 GEMM, the digit products recombined in int64."""
    planes = signed_digit_planes(values)  # (K, N, H, W, C)
    count, batch = planes.shape[:2]
    planes = planes.flatten(0, 1)
    if any(padding):
        planes = F.pad(planes, (0, 0, padding[1], padding[1], padding[0], padding[0]))
    if tuple(kernel) == (1, 1) and tuple(stride) == (1, 1):
        height, width = planes.shape[1:3]
        columns = planes.reshape(-1, planes.shape[-1])
    else:  # im2col, channels last: rows (kh, kw, C) as weight_digit_matrix orders them
        windows = planes.unfold(1, kernel[0], stride[0]).unfold(2, kernel[1], stride[1])  # (K·N, H', W', C, kh, kw)
        height, width = windows.shape[1:3]
        columns = windows.permute(0, 1, 2, 4, 5, 3).reshape(count * batch * height * width, -1)
    products = torch._int_mm(columns, matrix)  # int32, exact: see the module's doc for the bound
    products = products.reshape(count, batch * height * width, weight_digits, -1)
    total = products[0, :, 0].long()
    for k in range(count):
        for j in range(weight_digits):
            if k or j:
                total += products[k, :, j].long() << (DIGIT_BITS * (k + j))
    return total.reshape(batch, height, width, -1)


def _transposed_as_convolution_input(values: torch.Tensor, args: dict) -> tuple[torch.Tensor, tuple[int, int]]:
    """The channels-last input of a transposed convolution as a stride-1 convolution's: ``stride - 1`` zeros
    between samples, and the padding (``kernel - 1 - padding`` each side, plus ``output_padding`` at the bottom /
    right, inside the spread input)."""
    (sh, sw), (ph, pw), (oh, ow) = args["stride"], args["padding"], args["output_padding"]
    kernel = args["kernel"]
    n, h, w, c = values.shape
    spread = values.new_zeros(n, (h - 1) * sh + 1 + oh, (w - 1) * sw + 1 + ow, c)
    spread[:, : (h - 1) * sh + 1 : sh, : (w - 1) * sw + 1 : sw] = values
    return spread, (kernel[0] - 1 - ph, kernel[1] - 1 - pw)
