"""Typed training configuration, with ``key=value`` overrides from the command line."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from icmkit.errors import ConfigError


def default_train_folders() -> list[str]:
    """The shared training sets when present beside the checkout (development machines only)."""
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    candidates = [shared / "imagenet-train500", shared / "bsds500" / "train", shared / "bsds500" / "val"]
    return [str(p) for p in candidates if p.is_dir()]


@dataclass
class TrainConfig:
    """Every field of a training run; saved beside every checkpoint."""

    out: str = "runs/icm-mse"  # run directory: checkpoints, logs, final weights
    data: list[str] = field(default_factory=default_train_folders)  # image folders (train sets only)
    architecture: str = "mean-scale-hyperprior"
    N: int = 64  # transform width
    M: int = 160  # latent channels
    lmbda: float = 0.0067  # rate–distortion trade-off: λ·255²·MSE + bpp
    crop: int = 256
    batch_size: int = 8
    steps: int = 20000
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_drop_at: float = 0.85  # fraction of steps after which the learning rate is divided by 10
    clip_grad: float = 1.0
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    log_every: int = 50
    checkpoint_every: int = 500
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0 = no limit

    def validate(self) -> None:
        if self.crop % 64:
            raise ConfigError(f"crop must be a multiple of 64, got {self.crop}")
        for name in ("batch_size", "steps", "N", "M", "log_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.lmbda <= 0 or self.lr <= 0 or self.aux_lr <= 0:
            raise ConfigError("lmbda, lr and aux_lr must be positive")
        if not self.data:
            raise ConfigError("no training data folders (set data=[...])")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings; values parse as JSON when they can (numbers, lists), else strings."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"bad override {item!r}; known keys: {', '.join(fields)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        current = getattr(config, key)
        if isinstance(current, list) and isinstance(value, str):
            value = [v for v in value.split(",") if v]
        elif isinstance(current, float) and isinstance(value, int):
            value = float(value)
        if type(value) is not type(current):
            raise ConfigError(f"{key} expects {type(current).__name__}, got {raw!r}")
        setattr(config, key, value)
    config.validate()
    return config
