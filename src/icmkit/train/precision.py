"""Mixed precision: autocast for the transforms, float32 for entropy models and the loss.

Likelihoods in bf16 / fp16 would make the rate term (−log₂ of values near 0 or 1) coarse, so the entropy
models run with autocast switched off and float32 inputs. On CUDA ``amp`` turns it on; on the CPU ``cpu_bf16``
does, and only where the CPU computes bf16 natively (AMX or AVX512-BF16 — elsewhere bf16 is emulated and slower
than float32). Otherwise every method here is a plain float32 pass-through.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from icmkit.entropy._tables import HasTables
from icmkit.tensors import to_float32


def keep_entropy_models_in_float32(model: nn.Module, device_type: str) -> None:
    """Make every entropy model of ``model`` compute in float32 even inside an autocast region."""
    _keep_in_float32(model, lambda module: isinstance(module, HasTables), device_type)


def keep_depthwise_convolutions_in_float32(model: nn.Module, device_type: str) -> None:
    """Run every depthwise convolution of ``model`` in float32 inside an autocast region: on the CPU oneDNN's
    bf16 depthwise kernels (backward above all) were 3–10× slower than float32 ones (measured: 8×112×32² with a 7×7
    kernel, forward + backward, 40 vs 13 ms; channels last)."""
    _keep_in_float32(model, _is_depthwise, device_type)


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def _keep_in_float32(model: nn.Module, chosen, device_type: str) -> None:
    for module in model.modules():
        if chosen(module):
            module.forward = _float32_forward(module.forward, device_type)


def _float32_forward(forward, device_type: str):
    @functools.wraps(forward)
    def float32_forward(*args, **kwargs):
        with torch.autocast(device_type=device_type, enabled=False):
            return forward(*to_float32(args), **to_float32(kwargs))

    return float32_forward


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles or AVX512-BF16). torch exposes the checks as private
    functions of ``torch.cpu``; a build without them counts as no."""
    checks = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(bool(check()) for check in checks if check is not None)


class MixedPrecision:
    """Autocast (bf16 where supported, else fp16 with a gradient scaler) when ``enabled`` on CUDA; bf16 on a CPU
    with native bf16 when ``cpu_bf16``.

    Args:
        device: The training device.
        enabled: Whether mixed precision was asked for on CUDA (the config's ``amp``).
        cpu_bf16: Whether bf16 autocast was asked for on the CPU (the config's ``cpu_bf16``); ignored on a CPU
            without native bf16.
    """

    def __init__(self, device: torch.device, enabled: bool, cpu_bf16: bool = False):
        self.device_type = device.type
        on_cpu = device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16()
        self.enabled = (enabled and device.type == "cuda") or on_cpu
        bf16 = on_cpu or (self.enabled and torch.cuda.is_bf16_supported())
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        # bf16 has float32's range: only fp16 needs its gradients scaled against underflow.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and not bf16)  # never on the CPU

    def describe(self) -> str:
        return str(self.dtype).removeprefix("torch.") if self.enabled else "float32"

    def prepare(self, model: nn.Module) -> None:
        if self.enabled:
            keep_entropy_models_in_float32(model, self.device_type)
            if self.device_type == "cpu":
                keep_depthwise_convolutions_in_float32(model, self.device_type)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true size (before clipping them)."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)  # skipped when fp16 gradients overflowed
        self.scaler.update()
