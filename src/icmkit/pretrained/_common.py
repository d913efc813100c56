"""What classifiers and detectors share: reading weight files, describing mismatches, checking inputs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from icmkit.errors import IcmError, one_line
from icmkit.image import check_rgb

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


def mismatch_summary(model: torch.nn.Module, state: Mapping[str, torch.Tensor], ignore_suffix: str = "") -> str:
    """Why a state dict does not fit a model, in one line (``ignore_suffix``: keys that may be extra)."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target and not (ignore_suffix and k.endswith(ignore_suffix))]
    shapes = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches, e.g. {shapes[0]}")
    return "; ".join(parts)


def check_image(image: np.ndarray, index: int) -> np.ndarray:
    return check_rgb(image, f"image {index}")


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model
