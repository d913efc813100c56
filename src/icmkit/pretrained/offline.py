"""``ICM_OFFLINE=1``: no download of any kind — datasets (:mod:`icmkit.bench.download`) and pretrained classifier
weights alike. Torchvision and timm download missing weights on first use; under ``ICM_OFFLINE=1`` a loader asks
here first whether they are already in the local caches, and refuses cleanly when they are not."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

ENVIRONMENT = "ICM_OFFLINE"


def offline() -> bool:
    return os.environ.get(ENVIRONMENT) == "1"


def _hub_checkpoint(url: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def torchvision_weights_cached(weights) -> bool:
    """Whether a torchvision weights enum member's file is in torch hub's cache (no download needed)."""
    return bool(weights.url) and _hub_checkpoint(weights.url).is_file()


def timm_weights_cached(name: str) -> bool:
    """Whether timm's pretrained weights of ``name`` are in a local cache (Hugging Face hub, torch hub or a file)."""
    from timm.models import _builder, get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return False
    load_from, location = _builder._resolve_pretrained_source(cfg.to_dict())
    if load_from == "file":
        return Path(location).is_file()
    if load_from == "url":
        return _hub_checkpoint(location).is_file()
    if load_from == "hf-hub":
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = location.partition("@")
        filename = cfg.hf_hub_filename or "pytorch_model.bin"
        names = [filename, filename.replace("pytorch_model.bin", "model.safetensors").replace(".bin", ".safetensors")]
        return any(isinstance(try_to_load_from_cache(repo, f, revision=revision or None), str) for f in names)
    return False


def refusal(name: str, source: str) -> str:
    return f"{name}: {ENVIRONMENT}=1: not downloading {source}'s pretrained weights (not in the local cache)"
