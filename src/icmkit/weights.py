"""Weight files: safetensors with self-describing metadata, and the digest that streams carry."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from icmkit.digest import DIGEST_BYTES, weights_digest  # noqa: F401 (re-exported)
from icmkit.errors import IcmError, one_line
from icmkit.fileio import atomic_write
from icmkit.models import CompressionModel, build_model


def save_weights(model: CompressionModel, path: str | Path, metadata: dict | None = None, slim: bool = False) -> None:
    """Write ``model``'s tensors and metadata. ``slim``: only what coding reads — no float twins of the
    exact-integer networks (``model.float_twins``) and float weights as float16 (the loaded model computes
    in float32 on the stored values, so encoder and decoder still agree) — for shipped files."""
    if slim:
        model.require_finalized()
    source = model.coding_state_dict() if slim else model.state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in source.items()}
    if slim:
        state = {k: v.half() if v.dtype == torch.float32 and not _is_table(k) else v for k, v in state.items()}
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


def file_qualities(path: str | Path) -> int:
    """How many rate points (gain units) a variable-rate weights file holds, from its metadata alone."""
    return int(json.loads(read_metadata(path).get("config", "{}")).get("qualities", 1))


def load_weights(path: str | Path) -> tuple[CompressionModel, dict[str, str]]:
    """Build the architecture the file names and load its tensors (strictly)."""
    meta = read_metadata(path)
    try:
        model = build_model(meta["architecture"], **json.loads(meta["config"]))
        state = load_file(str(path))
        result = model.load_state_dict(state, strict=False)  # float16 tensors are widened on copy
        missing = [k for k in result.missing_keys if not model.is_float_twin(k)]
        if missing or result.unexpected_keys:
            keys = missing or result.unexpected_keys
            raise RuntimeError(f"{len(keys)} {'missing' if missing else 'unexpected'} tensors, e.g. {keys[0]}")
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise IcmError(f"{path}: not icmkit codec weights ({one_line(exc)})") from None
    return model.eval(), meta


def _is_table(key: str) -> bool:
    # Coding tables and scale tables stay float32: they define the integer CDFs bit for bit.
    return key.rsplit(".", 1)[-1] in ("table_pmf", "scale_table")
