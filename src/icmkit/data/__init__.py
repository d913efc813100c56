"""Small public-domain / CC0 photos shipped with icmkit for demos, defaults and tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLES_DIR = Path(str(resources.files(__package__) / "samples"))


def sample_paths() -> list[Path]:
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix in (".png", ".jpg"))


def sample_path(name: str = "coffee.png") -> Path:
    return SAMPLES_DIR / name
