"""Weight files: safetensors with self-describing metadata, and the digest that streams carry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from icmkit.errors import IcmError
from icmkit.fileio import atomic_write
from icmkit.models import CompressionModel, build_model

DIGEST_BYTES = 8


def weights_digest(state_dict: dict[str, torch.Tensor]) -> bytes:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, truncated to 8 bytes."""
    sha = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return sha.digest()[:DIGEST_BYTES]


def save_weights(model: CompressionModel, path: str | Path, metadata: dict | None = None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"architecture": model.architecture, "config": json.dumps(model.config)}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    atomic_write(path, save(state, metadata=meta))


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except FileNotFoundError:
        raise IcmError(f"{path}: weights file not found") from None
    except Exception as exc:  # safetensors raises its own error types for foreign files
        raise IcmError(f"{path}: not a safetensors weights file ({exc})") from None


def load_weights(path: str | Path) -> tuple[CompressionModel, dict[str, str]]:
    """Build the architecture the file names and load its tensors (strictly)."""
    meta = read_metadata(path)
    try:
        model = build_model(meta["architecture"], **json.loads(meta["config"]))
        model.load_state_dict(load_file(str(path)), strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise IcmError(f"{path}: not icmkit codec weights ({str(exc).splitlines()[0]})") from None
    return model.eval(), meta
