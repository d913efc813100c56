"""Tiny training setups shared by the training tests: generated photos and a config that trains in seconds."""

from __future__ import annotations

from pathlib import Path

import yaml
from PIL import Image

from conftest import synthetic_photo

# Small enough for a few CPU steps per second; crop 64 is the smallest the model's stride allows.
TINY_FIELDS = {
    "N": 8,
    "M": 8,
    "crop": 64,
    "batch_size": 2,
    "steps": 4,
    "log_every": 1,
    "checkpoint_every": 2,
    "lr": 1e-3,
    "tensorboard": False,
    "device": "cpu",
}


def make_image_folder(folder: Path, count: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(synthetic_photo(80, 90, seed=i)).save(folder / f"{i}.png")
    return folder


def write_yaml(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def tiny_yaml(path: Path, data: Path, out: Path, **changes) -> Path:
    """A YAML config of the tiny setup training on ``data`` into ``out``."""
    return write_yaml(path, **{**TINY_FIELDS, "data": [str(data)], "out": str(out), **changes})
