"""Training a receiver-side restoration filter (``architecture: restoration-cnn``) on a cache of decoded crops.

No codec runs in the loop: ``icm cache decoded`` coded every crop once at a few qualities of the base codec's
training grid. Each step draws ``batch_size`` cached items at random — so qualities are mixed within a batch, one
per crop, and the FiLM condition sees the whole grid — takes a ``crop``² window of each (aligned to 16 pixels, so
the codec's block grid stays where the receiver sees it), flips it at random, and minimises
``λ·255²·MSE + β·perception`` (:class:`~icmkit.losses.restoration.RestorationObjective`).

Random streams: item picks come from a numpy generator, windows, flips and the MMD's position draws from torch's;
both are in every checkpoint, so a resumed single-process CPU run repeats the uninterrupted one bit for bit.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from icmkit.errors import ConfigError
from icmkit.losses.restoration import RestorationObjective
from icmkit.models.restoration import RestorationNet
from icmkit.train.base import TrainerBase, register_trainer
from icmkit.train.builders import build_perception
from icmkit.train.config import RESTORATION, TrainConfig
from icmkit.train.decoded_cache import CacheError, DecodedCrops
from icmkit.weights import save_weights


def build_restoration_net(config: TrainConfig, manifest: dict) -> RestorationNet:
    """The filter a config asks for, behind the cache's codec and conditioned on the cache's quality range (or on
    the config's ``quality_band``)."""
    grid = [float(q) for q in manifest["grid"]]
    lo, hi = config.data.quality_band or (min(grid), max(grid))
    return RestorationNet(
        base=manifest["codec"],
        quality_lo=float(lo),
        quality_hi=float(hi),
        scale=config.model.filter_scale,
        width=config.model.filter_width,
        blocks=config.model.filter_blocks,
        edge_kernel=config.model.filter_edge_kernel,
    )


@register_trainer(lambda config: config.model.architecture == RESTORATION)
class RestorationTrainer(TrainerBase):
    """A restoration filter on a decoded-crop cache: one Adam optimiser, λ·255²·MSE + β·perception."""

    def check_inputs(self) -> None:
        try:
            self.dataset = DecodedCrops(Path(self.config.data.decoded_cache).expanduser(), patch=self.config.data.crop)
        except (CacheError, OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"decoded_cache: {exc}") from None
        if not len(self.dataset):
            raise ConfigError(f"decoded_cache: {self.config.data.decoded_cache} holds no decoded crops")
        self.items = np.arange(len(self.dataset))
        if self.config.data.quality_band:
            self.items = self.dataset.indices_within(*self.config.data.quality_band)
            if not len(self.items):
                band = self.config.data.quality_band
                raise ConfigError(f"decoded_cache holds no crop of a quality in quality_band {band}")

    def build(self) -> None:
        config = self.config
        torch.manual_seed(config.schedule.seed)  # the same initial weights on every rank
        self.model = build_restoration_net(config, self.dataset.manifest).to(self.device)
        perception = build_perception(config) if config.loss.beta > 0 else None
        self.loss = RestorationObjective(config.loss.lmbda, config.loss.distortion, config.loss.beta, perception).to(
            self.device
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.schedule.lr)
        self.batch_rng = np.random.default_rng(self.stream_seed(1))
        if self.parallel.active:
            torch.manual_seed(self.stream_seed(0))  # each rank its own windows and flips

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.optimizer}

    def random_streams(self) -> dict[str, np.random.Generator]:
        return {"batch": self.batch_rng}

    def checkpoint_metadata(self) -> dict:
        return {"lmbda": self.config.loss.lmbda, "beta": self.config.loss.beta, "decoded_cache": self.dataset.manifest}

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        picks = self.items[self.batch_rng.integers(0, len(self.items), self.config.schedule.batch_size)]
        originals, decoded, qualities = zip(*(self.dataset[int(i)] for i in picks))
        return tuple(torch.stack(part).to(self.device) for part in (originals, decoded, qualities))

    def train_step(self, batch) -> dict[str, float]:
        original, decoded, quality = batch
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        parts = self.loss(self.network(decoded, quality), original)
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        if self.config.schedule.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.schedule.clip_grad)
        self.optimizer.step()
        self.step += 1
        result = {k: float(v.detach()) for k, v in parts.items()}
        result["psnr"] = -10 * math.log10(max(result["mse"], 1e-12))
        result["base_psnr"] = -10 * math.log10(max(float(torch.mean((decoded - original) ** 2)), 1e-12))
        return result

    def export(self) -> Path:
        path = self.out / "final.safetensors"
        export_filter(self.model.to("cpu"), self.config, self.step, self.dataset.manifest, path, self.git_commit)
        return path


def export_filter(model: RestorationNet, config: TrainConfig, step: int, manifest: dict, path: Path, commit=None):
    """Write a filter's weights with its provenance (the cache's codec, grid and versions; not its folders)."""
    model.eval()
    save_weights(
        model,
        path,
        {
            "lmbda": config.loss.lmbda,
            "beta": config.loss.beta,
            "steps": step,
            "crop": config.data.crop,
            "batch_size": config.schedule.batch_size,
            "decoded_cache": {k: v for k, v in manifest.items() if k != "folders"},
            "git_commit": commit,
            "train_config": config.to_json(),
        },
    )


__all__ = ["RestorationTrainer", "build_restoration_net", "export_filter"]
