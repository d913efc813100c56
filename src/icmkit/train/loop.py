"""The training loop for learned pixel codecs: main + auxiliary optimisers, checkpoints, exact resume.

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
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from icmkit.errors import ConfigError
from icmkit.fileio import atomic_write
from icmkit.losses import CodecObjective, FeatureTap, PerceptionConsistencyLoss
from icmkit.losses.objective import lmbda_at
from icmkit.models import MeanScaleHyperprior, VariableRateHyperprior
from icmkit.train.builders import (
    FeatureCodecTraining,
    build_codec_model,
    build_feature_objective,
    load_backbone,
    trains_on_backbone_features,
)
from icmkit.train.config import MOCO_V2, TrainConfig
from icmkit.train.data import RandomCrops, find_images
from icmkit.train.distributed import DataParallel
from icmkit.train.precision import MixedPrecision, to_float32
from icmkit.train.redundancy_source import start_codec_from_redundancy_filter
from icmkit.train.reporting import Reporter, RunLog, print_json_line
from icmkit.weights import load_weights, save_weights


def build_objective(config: TrainConfig) -> CodecObjective:
    """The loss a config asks for; the frozen perception network is loaded only when β > 0."""
    perception = None
    if config.beta > 0:
        from icmkit.tasks.classification import load_classifier

        weights = None if config.perception_weights == "none" else config.perception_weights
        classifier = load_classifier(config.perception_model, weights)
        try:
            tap = FeatureTap.from_classifier(classifier, config.perception_layers)
        except ValueError as exc:
            raise ConfigError(f"perception_layers: {exc}") from None
        perception = PerceptionConsistencyLoss(
            tap,
            config.perception_layer_weights or None,
            config.mmd_samples,
            tuple(config.mmd_bandwidths),
            config.distill_weight,
            config.distill_temperature,
        )
    return CodecObjective(config.lmbda, config.distortion, config.beta, perception)


def git_commit() -> str | None:
    """The commit of the checkout this code runs from; None outside a git checkout or without git."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"{prefix}.{index}.{slot}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    return tensors, state["param_groups"]


def _restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_names(rank: int) -> dict[str, str]:
    """Checkpoint keys of one rank's random streams (rank 0 keeps the names of single-process runs)."""
    suffix = "" if rank == 0 else f".rank{rank}"
    return {
        "torch": f"rng.torch{suffix}",
        "cuda": f"rng.cuda{suffix}",
        "dataset": f"dataset_rng{suffix}",
        "batch": f"batch_rng{suffix}",
        "views": f"view_uses{suffix}",  # a feature cache's draw counters (icmkit.train.feature_cache)
    }


def _model_tensors(tensors: dict) -> dict:
    return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}


def make_trainer(config: TrainConfig, report: Reporter = print_json_line) -> Trainer:
    """The trainer a config asks for: codecs (and the RE stage, ``dicm-re``) train with :class:`Trainer`;
    ``architecture: moco-v2`` pre-trains a backbone (the self-supervised stage), with
    :class:`icmkit.train.ssl_loop.ContrastiveTrainer` — or, with ``ssl_re_from``, jointly with an RE module
    (:class:`icmkit.train.ssl_joint_loop.JointContrastiveTrainer`, DICM's stage 3)."""
    if config.architecture == MOCO_V2 and config.ssl_re_from:
        from icmkit.train.ssl_joint_loop import JointContrastiveTrainer

        return JointContrastiveTrainer(config, report)
    if config.architecture == MOCO_V2:
        from icmkit.train.ssl_loop import ContrastiveTrainer

        return ContrastiveTrainer(config, report)
    return Trainer(config, report)


class Trainer:
    def __init__(self, config: TrainConfig, report: Reporter = print_json_line):
        config.validate()
        self.config = config
        self.out = Path(config.out)
        self.parallel, self.device = DataParallel.from_environment(config.device)
        self.files = self._find_images()  # before anything is written: a wrong folder fails cleanly
        self.run_log = self._open_run_log(report)
        if config.threads:
            torch.set_num_threads(config.threads)
        self._build_model()
        self._build_data()
        self.step = 0
        self.git_commit = git_commit()
        if not self._resume():
            if config.init_from:
                self._initialise_from(Path(config.init_from))
            elif self.backbone is not None and not config.re_from:  # re_from brings the statistics RE was trained on
                self._init_feature_statistics()
        self.network = self._distribute()

    def _build_model(self) -> None:
        config = self.config
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.backbone = load_backbone(config) if trains_on_backbone_features(config) else None
        self.model = build_codec_model(config, self.backbone)
        if config.re_from:  # DICM's stage 4: stage 3's RE module, frozen (on resume too: a checkpoint holds no freeze)
            start_codec_from_redundancy_filter(self.model, config, self.backbone.info)
        self.precision = MixedPrecision(self.device, config.amp)
        self.precision.prepare(self.model)
        self.model.to(self.device)
        if self.backbone is not None:
            self.backbone.to(self.device)
            self.loss = build_feature_objective(config, self.backbone).to(self.device)
        else:
            self.loss = build_objective(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.main_parameters(), lr=config.lr)
        self.aux_optimizer = torch.optim.Adam(self.model.aux_parameters(), lr=config.aux_lr)

    def _build_data(self) -> None:
        if self.config.feature_cache:  # the head's outputs, computed once per view: steps skip the frozen head
            from icmkit.train.feature_cache import CachedViews

            self.dataset = CachedViews.for_training(self.config, self.backbone, self.files, self._stream_seed(0))
        else:
            self.dataset = RandomCrops(
                self.files, self.config.crop, seed=self._stream_seed(0), resize=self.config.resize
            )
        self.batch_rng = np.random.default_rng(self._stream_seed(1))
        if self.parallel.active:
            torch.manual_seed(self._stream_seed(0))  # each rank its own quantisation noise

    def _open_run_log(self, report: Reporter) -> RunLog | None:
        if not self.parallel.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        return RunLog(self.out, report, self.config.tensorboard)

    def _stream_seed(self, stream: int) -> int:
        """Seed of a data stream (0: crops and flips, 1: batch picks); rank 0 of DDP and a single process
        use ``seed`` and ``seed + 1``, rank r shifts both by 2r so no two ranks share a stream."""
        return self.config.seed + 2 * self.parallel.rank + stream

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
        if type(source) is not type(self.model) or source.config != self.model.config:
            raise ConfigError(
                f"init_from {path}: holds {type(source).__name__} {source.config}, "
                f"not {type(self.model).__name__} {self.model.config}"
            )
        self.model.load_state_dict(source.state_dict())
        self.log({"event": "initialised", "from": str(path)})

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
        source_lmbda = float(meta.get("lmbda", self.config.lmbda))
        self.model.set_gains_for(self.config.lmbdas or [self.config.lmbda], source_lmbda)
        return True

    @torch.no_grad()
    def _init_feature_statistics(self, count: int = 32) -> None:
        """A fresh feature codec standardises the head's features with statistics of centre crops of the
        first ``count`` training images (the same on every rank: they come from the same files)."""
        if self.config.feature_cache:  # the cache holds these centre crops' features, in float32
            features = self.dataset.center_features()[:count].to(self.device)
        else:
            crops = [self.dataset.center_crop(i) for i in range(min(count, len(self.dataset)))]
            features = torch.cat(
                [self.backbone.features(torch.stack(crops[i : i + 8]).to(self.device)) for i in range(0, len(crops), 8)]
            )
        self.model.set_feature_statistics(features)
        self.log({"event": "feature statistics", "images": len(features), "std": round(float(features.std()), 3)})

    def _distribute(self) -> torch.nn.Module:
        """The model under DDP for the main loss; the auxiliary parameters stay outside (see distributed.py)."""
        trained, prefix = self.model, ""
        if self.backbone is not None and self.config.feature_cache:  # cached head features → codec
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
    def _checkpoint_paths(self) -> tuple[Path, Path]:
        return self.out / "checkpoint.safetensors", self.out / "checkpoint.json"

    def _rng_state(self) -> dict:
        state = {
            "torch": torch.get_rng_state(),
            "dataset": self.dataset.rng.bit_generator.state,
            "batch": self.batch_rng.bit_generator.state,
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.config.feature_cache:
            state["views"] = self.dataset.state()
        return state

    def _checkpoint_extras(self) -> tuple[dict, dict]:
        """This trainer's own part of a checkpoint: optimiser tensors, and metadata (λ, β, optimiser groups)."""
        main, main_groups = _optimizer_tensors("opt", self.optimizer)
        aux, aux_groups = _optimizer_tensors("aux", self.aux_optimizer)
        meta = {
            "lmbda": self.config.lmbda,
            "beta": self.config.beta,
            "optimizer_groups": main_groups,
            "aux_optimizer_groups": aux_groups,
        }
        return {**main, **aux}, meta

    def save_checkpoint(self) -> None:
        rng_states = self.parallel.gather(self._rng_state())  # every rank takes part; rank 0 writes
        if not self.parallel.is_main:
            return
        tensors_path, meta_path = self._checkpoint_paths()
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        extra_tensors, extra_meta = self._checkpoint_extras()
        tensors.update(extra_tensors)
        meta = {
            "step": self.step,
            "config": json.loads(self.config.to_json()),
            "data": list(self.config.data),
            "world_size": self.parallel.world_size,
            "git_commit": self.git_commit,
            "grad_scaler": self.precision.scaler.state_dict(),
            **extra_meta,
        }
        for rank, state in enumerate(rng_states):
            names = _rng_names(rank)
            tensors[names["torch"]] = state["torch"]
            if "cuda" in state:
                tensors[names["cuda"]] = state["cuda"]
            if "views" in state:
                tensors[names["views"]] = state["views"]
            for key in ("dataset", "batch"):  # numpy generators of the crop pipeline, where the trainer has them
                if key in state:
                    meta[names[key]] = state[key]
        atomic_write(tensors_path, save(tensors))
        atomic_write(meta_path, json.dumps(meta, default=_json_default).encode())

    def _resume(self) -> bool:
        tensors_path, meta_path = self._checkpoint_paths()
        if not (tensors_path.exists() and meta_path.exists()):
            return False
        tensors = load_file(str(tensors_path))  # load_state_dict moves each tensor to its device
        meta = json.loads(meta_path.read_text())
        self.model.load_state_dict(_model_tensors(tensors))
        _restore_optimizer("opt", self.optimizer, tensors, meta["optimizer_groups"])
        _restore_optimizer("aux", self.aux_optimizer, tensors, meta["aux_optimizer_groups"])
        if meta.get("grad_scaler"):
            self.precision.scaler.load_state_dict(meta["grad_scaler"])
        self.step = int(meta["step"])
        restored = self._restore_rng(tensors, meta)
        self.log({"event": "resumed", "step": self.step, **({} if restored else {"random_streams": "new"})})
        return True

    def _restore_rng(self, tensors: dict, meta: dict) -> bool:
        """This rank's random streams from the checkpoint; False (streams left fresh) when it has none,
        as after resuming with more processes than the run had."""
        names = _rng_names(self.parallel.rank)
        if names["torch"] not in tensors or names["dataset"] not in meta:
            return False
        torch.set_rng_state(tensors[names["torch"]])
        if self.device.type == "cuda" and names["cuda"] in tensors:
            torch.cuda.set_rng_state(tensors[names["cuda"]], self.device)
        self.dataset.rng.bit_generator.state = meta[names["dataset"]]
        self.batch_rng.bit_generator.state = meta[names["batch"]]
        if self.config.feature_cache and names["views"] in tensors:
            self.dataset.load_state(tensors[names["views"]])
        return True

    # -- loop -------------------------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        drop = step >= int(self.config.lr_drop_at * self.config.steps)
        return self.config.lr * (0.1 if drop else 1.0)

    def next_batch(self) -> torch.Tensor:
        picks = self.batch_rng.integers(0, len(self.dataset), self.config.batch_size)
        return torch.stack([self.dataset[int(i)] for i in picks]).to(self.device)

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
                output = self.network(batch, int(self.batch_rng.integers(self.model.qualities)))
            elif isinstance(self.model, VariableRateHyperprior):  # a continuous quality per step, its λ
                quality = 1 + float(self.batch_rng.random()) * (self.model.qualities - 1)
                extra["lmbda"] = lmbda_at(self.config.lmbdas or [self.config.lmbda], quality)
                output = self.network(batch, quality)
            else:
                output = self.network(batch)
        # The loss in float32, outside autocast; it reads the images' shape alone (cached features stand in for them).
        target = self.dataset.loss_target(batch) if self.config.feature_cache else batch
        parts = self.loss(to_float32(output), target, **extra)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(parts["loss"])
        if self.config.clip_grad > 0:
            self.precision.unscale(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.main_parameters(), self.config.clip_grad)
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

    def log(self, record: dict) -> None:
        if self.run_log is not None:
            self.run_log.write(record)

    def run(self) -> Path | None:
        """Train to ``config.steps`` (or ``stop_at``, or the time limit) and export; the weights' path on rank 0,
        None elsewhere."""
        try:
            self._train()
            path = self.export() if self.parallel.is_main else None
            self.parallel.barrier()  # no rank leaves before the weights exist
            return path
        finally:
            if self.run_log is not None:
                self.run_log.close()
            self.parallel.close()

    def _train(self) -> None:
        config = self.config
        started = time.monotonic()
        window: list[dict] = []
        self.model.train()
        self.log(
            {
                "event": "started",
                "step": self.step,
                "steps": config.steps,
                "device": str(self.device),
                "precision": self.precision.describe(),
                "world_size": self.parallel.world_size,
            }
        )
        while self.step < (config.stop_at or config.steps):
            window.append(self.train_step(self.next_batch()))
            if self.step % config.log_every == 0:
                self._log_progress(window, started)
                window.clear()
            out_of_time = self._out_of_time(started)
            if self.step % config.checkpoint_every == 0 or out_of_time:
                self.save_checkpoint()
            if out_of_time:
                self.log({"event": "time limit reached", "step": self.step})
                break
        self.save_checkpoint()

    def _log_progress(self, window: list[dict], started: float) -> None:
        mean = {k: sum(r[k] for r in window) / len(window) for k in window[0]}
        mean = self.parallel.mean_over_ranks(mean)
        self.log(
            {
                "step": self.step,
                "lr": self.learning_rate(self.step),
                "minutes": round((time.monotonic() - started) / 60, 2),
                **mean,
            }
        )

    def _out_of_time(self, started: float) -> bool:
        if not self.config.max_minutes:
            return False
        return self.parallel.any_rank(time.monotonic() - started > 60 * self.config.max_minutes)

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
            "lmbda": config.lmbda,
            "lmbdas": config.lmbdas,
            "beta": config.beta,
            "steps": step,
            "crop": config.crop,
            "batch_size": config.batch_size,
            "data": [str(p) for p in config.data],
            "git_commit": commit,
            "train_config": config.to_json(),
        },
    )
    model.train(was_training)


def export_checkpoint(run_dir: str | Path, path: str | Path) -> dict:
    """Finalise the latest checkpoint of a run (it may still be training) into a weights file."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "checkpoint.json").read_text())
    config = TrainConfig(**meta["config"])
    tensors = load_file(str(run_dir / "checkpoint.safetensors"))
    model = build_codec_model(config)
    model.load_state_dict(_model_tensors(tensors))
    export_weights(model, config, int(meta["step"]), Path(path), meta.get("git_commit"))
    return meta


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
