"""The trainer of learned codecs (pixel and feature) and DICM's RE stage: main + auxiliary optimisers on the
loop, checkpoints and exact resume of :class:`~icmkit.train.base.TrainerBase`.

Checkpoints hold the model and both optimisers' state as safetensors, plus a JSON file with the step,
the config, provenance (λ, β, data, world size, git commit) and the random-number states, so that a
resumed run continues exactly where it stopped. Exactness is guaranteed for one process on the CPU;
under DDP every rank's random streams are saved too and resuming continues the same run, but collective
sums and GPU kernels need not round identically.

Under ``torchrun`` every rank trains on its own crops (see :mod:`icmkit.train.distributed`); rank 0
alone writes logs, checkpoints and the final weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from icmkit.backbones.fold import fold_batch_norms
from icmkit.errors import ConfigError
from icmkit.losses import CodecObjective
from icmkit.losses.objective import lmbda_at
from icmkit.models import MeanScaleHyperprior, VariableRateHyperprior
from icmkit.models.latent import regridded_gains
from icmkit.train.base import TrainerBase, read_checkpoint, register_trainer
from icmkit.train.builders import (
    FeatureCodecTraining,
    build_codec_model,
    build_feature_objective,
    build_perception,
    load_backbone,
    trains_on_backbone_features,
)
from icmkit.train.config import MOCO_V2, RESTORATION, TrainConfig
from icmkit.train.data import RandomCrops, find_images
from icmkit.train.precision import MixedPrecision, to_float32
from icmkit.train.redundancy_source import start_codec_from_redundancy_filter
from icmkit.weights import load_weights, save_weights


def build_objective(config: TrainConfig) -> CodecObjective:
    """The loss a config asks for; the frozen perception network is loaded only when β > 0."""
    perception = build_perception(config) if config.loss.beta > 0 else None
    return CodecObjective(config.loss.lmbda, config.loss.distortion, config.loss.beta, perception)


@register_trainer(lambda config: config.model.architecture not in (MOCO_V2, RESTORATION))
class Trainer(TrainerBase):
    """Codecs (pixel and feature) and DICM's RE stage (``dicm-re``): main and auxiliary optimisers, mixed
    precision on CUDA, images or cached head features."""

    def check_inputs(self) -> None:
        self.files = self._find_images()

    def build(self) -> None:
        self._build_model()
        self._build_data()

    def initialise(self) -> None:
        if self.config.model.init_from:
            self._initialise_from(Path(self.config.model.init_from))
        elif self.backbone is not None and not self.config.model.re_from:
            self._init_feature_statistics()  # (re_from brings the statistics RE was trained on)

    def _build_model(self) -> None:
        config = self.config
        torch.manual_seed(config.schedule.seed)  # the same initial weights on every rank
        self.backbone = load_backbone(config) if trains_on_backbone_features(config) else None
        self.model = build_codec_model(config, self.backbone)
        if config.model.re_from:  # DICM's stage 4: stage 3's RE module, frozen (on resume too: no freeze is saved)
            start_codec_from_redundancy_filter(self.model, config, self.backbone.info)
        self.precision = MixedPrecision(self.device, config.runtime.amp, config.runtime.cpu_bf16)
        self.precision.prepare(self.model)
        self.memory_format = torch.channels_last if config.runtime.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        if self.backbone is not None:
            self.loss = build_feature_objective(config, self.backbone)
            self.loss.tail_precision = self.precision.autocast
            if config.runtime.fold_tail_norms and getattr(self.loss, "runs_tail", False):
                self._fold_tail_batch_norms()
            self.precision.prepare(self.backbone)  # the tail's depthwise convolutions
            self.backbone.to(self.device, memory_format=self.memory_format)
            self.loss.to(self.device)
        else:
            self.loss = build_objective(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.main_parameters(), lr=config.schedule.lr)
        self.aux_optimizer = torch.optim.Adam(self.model.aux_parameters(), lr=config.schedule.aux_lr)

    def _fold_tail_batch_norms(self) -> None:
        """The frozen tail's batch norms folded into its convolutions: the tail terms run it forward and backward
        every step (the head stays as it is: a feature cache was built with it, and checks its digest)."""
        info = self.backbone.info
        side = max(1, self.config.data.crop // info.stride)
        self.backbone.eval()
        count = fold_batch_norms(self.backbone.tail, torch.zeros(1, info.channels, side, side))
        self.log({"event": "folded batch norms", "count": count})

    def _build_data(self) -> None:
        if self.config.data.feature_cache:  # the head's outputs, computed once per view: steps skip the frozen head
            from icmkit.train.feature_cache import CachedViews

            self.dataset = CachedViews.for_training(self.config, self.backbone, self.files, self.stream_seed(0))
        else:
            crop, resize = self.config.data.crop, self.config.data.resize
            self.dataset = RandomCrops(self.files, crop, seed=self.stream_seed(0), resize=resize)
        self.batch_rng = np.random.default_rng(self.stream_seed(1))
        if self.parallel.active:
            torch.manual_seed(self.stream_seed(0))  # each rank its own quantisation noise

    def _find_images(self) -> list[Path]:
        try:
            return find_images(self.config.data_folders())
        except FileNotFoundError as exc:
            raise ConfigError(f"data: {exc}") from None

    def _initialise_from(self, path: Path) -> None:
        source, meta = load_weights(path)
        if self._warm_start_variable_rate(source, meta):
            self.log({"event": "initialised", "from": str(path), "as": "single-rate hyperprior → variable rate"})
            return
        if self._warm_start_rate_grid(source, meta):
            self.log({"event": "initialised", "from": str(path), "as": "gains regridded to this config's λ"})
            return
        if type(source) is not type(self.model) or source.config != self.model.config:
            raise ConfigError(
                f"init_from {path}: holds {type(source).__name__} {source.config}, "
                f"not {type(self.model).__name__} {self.model.config}"
            )
        self.model.load_state_dict(source.state_dict())
        self.log({"event": "initialised", "from": str(path)})

    def _warm_start_rate_grid(self, source, meta: dict) -> bool:
        """A variable-rate model fine-tuned on another λ grid (more qualities, or moved ones): everything but the
        gains loads as it is, the gains start at the source's interpolated in log λ. False when the grids agree
        or the models differ in anything but their number of qualities."""
        if type(source) is not type(self.model) or not hasattr(self.model, "gain") or "lmbdas" not in meta:
            return False
        try:
            source_lmbdas = [float(v) for v in json.loads(meta["lmbdas"])]
        except (TypeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
            raise ConfigError("init_from: the file's lmbdas metadata is not a list of numbers") from None
        target_lmbdas = list(self.config.loss.lmbdas)
        others = {k: v for k, v in source.config.items() if k != "qualities"}
        if source_lmbdas == target_lmbdas or others != {k: v for k, v in self.model.config.items() if k != "qualities"}:
            return False
        state = {k: v for k, v in source.state_dict().items() if k not in ("gain", "inverse_gain")}
        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys or set(result.missing_keys) != {"gain", "inverse_gain"}:
            raise ConfigError(f"init_from: tensors differ beyond the gains: {result.missing_keys[:3]}")
        try:
            gains = [regridded_gains(rows, source_lmbdas, target_lmbdas) for rows in (source.gain, source.inverse_gain)]
        except ValueError as exc:
            raise ConfigError(f"init_from: cannot move its gains to this λ grid ({exc})") from None
        with torch.no_grad():
            self.model.gain.copy_(gains[0])
            self.model.inverse_gain.copy_(gains[1])
        return True

    def _warm_start_variable_rate(self, source, meta: dict) -> bool:
        """A variable-rate pixel model starting from a trained single-rate hyperprior of the same widths:
        its transforms and hyperprior load as they are (the context network starts as a zero residual) and
        the gains start at sqrt(λ_q / λ_source). False when ``source`` is not such a model."""
        if not (isinstance(self.model, VariableRateHyperprior) and type(source) is MeanScaleHyperprior):
            return False
        if (source.config["N"], source.config["M"]) != (self.model.config["N"], self.model.config["M"]):
            raise ConfigError(f"init_from: widths {source.config} differ from the model's {self.model.config}")
        shared = {k: v for k, v in source.state_dict().items() if not k.startswith("h_s_int.")}
        result = self.model.load_state_dict(shared, strict=False)
        if result.unexpected_keys:
            raise ConfigError(f"init_from: unexpected tensors {result.unexpected_keys[:3]}")
        source_lmbda = float(meta.get("lmbda", self.config.loss.lmbda))
        self.model.set_gains_for(self.config.loss.lmbdas or [self.config.loss.lmbda], source_lmbda)
        return True

    @torch.no_grad()
    def _init_feature_statistics(self, count: int = 32) -> None:
        """A fresh feature codec standardises the head's features with statistics of centre crops of the
        first ``count`` training images (the same on every rank: they come from the same files)."""
        if self.config.data.feature_cache:  # the cache holds these centre crops' features, in float32
            features = self.dataset.center_features()[:count].to(self.device)
        else:
            crops = [self.dataset.center_crop(i) for i in range(min(count, len(self.dataset)))]
            features = torch.cat(
                [self.backbone.features(torch.stack(crops[i : i + 8]).to(self.device)) for i in range(0, len(crops), 8)]
            )
        self.model.set_feature_statistics(features)
        self.log({"event": "feature statistics", "images": len(features), "std": round(float(features.std()), 3)})

    def distribute(self) -> torch.nn.Module:
        """The model under DDP for the main loss; the auxiliary parameters stay outside (see distributed.py)."""
        trained, prefix = self.model, ""
        if self.backbone is not None and self.config.data.feature_cache:  # cached head features → codec
            from icmkit.train.feature_cache import CachedFeatureCodecTraining

            trained, prefix = CachedFeatureCodecTraining(self.model), "codec."
        elif self.backbone is not None:  # images → frozen head → codec
            trained, prefix = FeatureCodecTraining(self.backbone, self.model), "codec."
        aux_names = [prefix + name for name, p in self.model.named_parameters() if name.endswith("quantiles")]
        # Integer buffers (coding tables, the integer hyper-decoder) are only built by update() after
        # training; DDP need not sync them, and gloo cannot even broadcast their int16 weights.
        integer_buffers = [prefix + name for name, b in self.model.named_buffers() if not b.is_floating_point()]
        self.parallel.broadcast_from_main(self.model.aux_parameters())  # DDP syncs only what it manages
        return self.parallel.wrap(trained, self.device, ignore=aux_names + integer_buffers)

    # -- checkpoints ------------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.optimizer, "aux": self.aux_optimizer}

    def random_streams(self) -> dict[str, np.random.Generator]:
        return {"dataset": self.dataset.rng, "batch": self.batch_rng}

    def rank_tensors(self) -> dict[str, torch.Tensor]:
        # A feature cache's draw counters.
        return {"views": self.dataset.state()} if self.config.data.feature_cache else {}

    def restore_rank_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.config.data.feature_cache and "views" in tensors:
            self.dataset.load_state(tensors["views"])

    def checkpoint_metadata(self) -> dict:
        return {
            "lmbda": self.config.loss.lmbda,
            "beta": self.config.loss.beta,
            "data": list(self.config.data.folders),
            "grad_scaler": self.precision.scaler.state_dict(),
        }

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if meta.get("grad_scaler"):
            self.precision.scaler.load_state_dict(meta["grad_scaler"])

    def started_record(self) -> dict:
        return {"precision": self.precision.describe()}

    # -- loop -------------------------------------------------------------------------------------
    def next_batch(self) -> torch.Tensor:
        picks = self.batch_rng.integers(0, len(self.dataset), self.config.schedule.batch_size)
        batch = torch.stack([self.dataset[int(i)] for i in picks]).to(self.device)
        return batch.contiguous(memory_format=self.memory_format)

    def train_step(self, batch: torch.Tensor) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        parts = self._main_step(batch)
        aux = self._aux_step()
        self.step += 1
        result = {k: float(v.detach()) for k, v in parts.items()}
        if getattr(self.loss, "pixel_output", True):
            result["psnr"] = -10 * math.log10(max(result["mse"], 1e-12))
        result["aux"] = float(aux.detach())
        return result

    def _main_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        extra = {}
        with self.precision.autocast():
            if self.backbone is not None:  # a variable-rate feature codec trains one quality per step
                output = self.network(batch, 1 + int(self.batch_rng.integers(self.model.qualities)))
            elif isinstance(self.model, VariableRateHyperprior):  # a continuous quality per step, its λ
                quality = 1 + float(self.batch_rng.random()) * (self.model.qualities - 1)
                extra["lmbda"] = lmbda_at(self.config.loss.lmbdas or [self.config.loss.lmbda], quality)
                output = self.network(batch, quality)
            else:
                output = self.network(batch)
        # The loss in float32, outside autocast; it reads the images' shape alone (cached features stand in for them).
        target = self.dataset.loss_target(batch) if self.config.data.feature_cache else batch
        parts = self.loss(to_float32(output), target, **extra)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(parts["loss"])
        if self.config.schedule.clip_grad > 0:
            self.precision.unscale(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.main_parameters(), self.config.schedule.clip_grad)
        self.precision.step(self.optimizer)
        return parts

    def _aux_step(self) -> torch.Tensor:
        """Fit the factorised prior's quantiles, on the bare model: they are outside DDP, so their
        gradients are averaged here (identical updates, hence identical quantiles, on every rank)."""
        aux = self.model.aux_loss()
        self.aux_optimizer.zero_grad(set_to_none=True)
        aux.backward()
        self.parallel.average_gradients(self.model.aux_parameters())
        self.aux_optimizer.step()
        return aux

    def export(self) -> Path:
        """Finalise the model (on the CPU, where coding tables are built) and write deployable weights."""
        path = self.out / "final.safetensors"
        self.model.to("cpu")
        export_weights(self.model, self.config, self.step, path, self.git_commit)
        return path


def export_weights(model, config: TrainConfig, step: int, path: Path, commit: str | None = None) -> None:
    was_training = model.training
    model.eval()
    model.update()
    save_weights(
        model,
        path,
        {
            "lmbda": config.loss.lmbda,
            "lmbdas": config.loss.lmbdas,
            "beta": config.loss.beta,
            "steps": step,
            "crop": config.data.crop,
            "batch_size": config.schedule.batch_size,
            "data": [str(p) for p in config.data.folders],
            "git_commit": commit,
            "train_config": config.to_json(),
        },
    )
    model.train(was_training)


def export_checkpoint(run_dir: str | Path, path: str | Path) -> dict:
    """Finalise the latest checkpoint of a run (it may still be training) into a weights file."""
    meta, config, tensors = read_checkpoint(run_dir)
    if config.model.architecture == RESTORATION:
        from icmkit.train.restoration_loop import build_restoration_net, export_filter

        model = build_restoration_net(config, meta["decoded_cache"])
        model.load_state_dict(tensors)
        export_filter(model, config, int(meta["step"]), meta["decoded_cache"], Path(path), meta.get("git_commit"))
        return meta
    model = build_codec_model(config)
    model.load_state_dict(tensors)
    export_weights(model, config, int(meta["step"]), Path(path), meta.get("git_commit"))
    return meta


def run_weights(run_dir: str | Path):
    """A run's model and metadata: its ``final.safetensors``, or, while it still trains, its latest checkpoint
    (finalised in a temporary file)."""
    import tempfile

    final = Path(run_dir) / "final.safetensors"
    if final.exists():
        return load_weights(final)
    with tempfile.TemporaryDirectory() as folder:
        latest = Path(folder) / "latest.safetensors"
        export_checkpoint(run_dir, latest)
        return load_weights(latest)
