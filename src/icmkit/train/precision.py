"""Mixed precision on CUDA: autocast for the transforms, float32 for entropy models and the loss.

Likelihoods in bf16 / fp16 would make the rate term (−log₂ of values near 0 or 1) coarse, so the entropy
models run with autocast switched off and float32 inputs. On the CPU (or with ``amp`` off) every
method here is a plain float32 pass-through.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from icmkit.entropy._tables import HasTables


def keep_entropy_models_in_float32(model: nn.Module, device_type: str) -> None:
    """Make every entropy model of ``model`` compute in float32 even inside an autocast region."""
    for module in model.modules():
        if isinstance(module, HasTables):
            module.forward = _float32_forward(module.forward, device_type)


def _float32_forward(forward, device_type: str):
    @functools.wraps(forward)
    def float32_forward(*args, **kwargs):
        with torch.autocast(device_type=device_type, enabled=False):
            return forward(*to_float32(args), **to_float32(kwargs))

    return float32_forward


def to_float32(value):
    """``value`` with every floating tensor inside (dicts, lists, tuples) cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


class MixedPrecision:
    """Autocast (bf16 where supported, else fp16 with a gradient scaler) when ``enabled`` on CUDA.

    Args:
        device: The training device; anything but CUDA trains in float32 whatever ``enabled`` says.
        enabled: Whether mixed precision was asked for (the config's ``amp``).
    """

    def __init__(self, device: torch.device, enabled: bool):
        self.device_type = device.type
        self.enabled = enabled and device.type == "cuda"
        bf16 = self.enabled and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        # bf16 has float32's range: only fp16 needs its gradients scaled against underflow.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and not bf16)

    def describe(self) -> str:
        return str(self.dtype).removeprefix("torch.") if self.enabled else "float32"

    def prepare(self, model: nn.Module) -> None:
        if self.enabled:
            keep_entropy_models_in_float32(model, self.device_type)

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
