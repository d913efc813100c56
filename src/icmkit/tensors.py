"""Small helpers on nested tensor structures, shared by the losses and the trainers."""

from __future__ import annotations

import torch


def to_float32(value):
    """``value`` with every floating tensor inside (dicts, lists, tuples) cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value
