"""Reading a user's local weights file for a task model (classifier or detector)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from icmkit.errors import IcmError, one_line

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def read_state_dict(path: Path, error: type[IcmError], suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> dict:
    """Tensors of a safetensors or torch file (unwrapping common checkpoint layouts); ``error`` on failure."""
    if not path.is_file():
        raise error(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise error(f"{path}: weights must be {', '.join(suffixes)}, not {suffix or 'no suffix'}")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any failure to parse a user's file is a user error
        raise error(f"{path}: cannot read weights ({one_line(exc)})") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):  # common checkpoint layouts
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error(f"{path}: not a state dict of tensors")
    return dict(state)
