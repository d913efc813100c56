"""What every trainer shares: the step loop, progress logs, the time limit, checkpoints and exact resume.

A trainer supplies its model, optimisers, data and step (:class:`TrainerBase`'s abstract hooks); the base writes
``checkpoint.safetensors`` (the model, every optimiser's state, each rank's torch — and CUDA — random state and the
trainer's own per-rank tensors) and ``checkpoint.json`` (the step, the config, provenance, optimiser groups, each
rank's numpy generator states and the trainer's own entries), and restores all of them on resume, so a resumed
single-process CPU run continues bit for bit. A checkpoint names the kind of run that wrote it; a resume refuses
another kind's.

Trainers: :class:`~icmkit.train.loop.Trainer` (codecs and DICM's RE stage),
:class:`~icmkit.train.ssl_loop.ContrastiveTrainer` (MoCo v2, DICM's stages 1 and 3),
:class:`~icmkit.train.restoration_loop.RestorationTrainer` (restoration filters); :func:`make_trainer` picks one
from the registry by the config's architecture.
"""

from __future__ import annotations

import json
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from icmkit.errors import ConfigError
from icmkit.fileio import atomic_write
from icmkit.train.config import TrainConfig
from icmkit.train.distributed import DataParallel
from icmkit.train.reporting import Reporter, RunLog, print_json_line

MODEL_PREFIX = "model."  # a checkpoint's model tensors; the rest are optimiser, RNG and trainer state


def model_tensors(tensors: dict) -> dict:
    """The model's state dict out of a checkpoint's tensors."""
    return {k.removeprefix(MODEL_PREFIX): v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}


def read_checkpoint(run_dir: str | Path) -> tuple[dict, TrainConfig, dict]:
    """A run folder's latest checkpoint (it may still be training): its metadata, config and model tensors."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "checkpoint.json").read_text())
    return (
        meta,
        TrainConfig.from_flat(meta["config"]),
        model_tensors(load_file(str(run_dir / "checkpoint.safetensors"))),
    )


def git_commit() -> str | None:
    """The commit of the working tree a run trains from (provenance), or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    """An optimiser's state as flat tensors (``prefix.<param>.<key>``) and its param groups as JSON."""
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.{index}.{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    return tensors, state["param_groups"]


def restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class TrainerBase(ABC):
    """The loop of a training run. Subclasses build ``self.model`` and their optimisers in :meth:`build`, and
    implement :meth:`next_batch`, :meth:`train_step` and :meth:`export`.

    Args:
        config: the run's configuration (validated here).
        report: where progress records go besides ``log.jsonl`` (the console by default).
    """

    # The kind of run a checkpoint holds ("" = the config's architecture); a resume refuses another kind's.
    checkpoint_kind: str = ""

    def __init__(self, config: TrainConfig, report: Reporter = print_json_line):
        config.validate()
        self.config = config
        self.out = Path(config.runtime.out)
        self.parallel, self.device = DataParallel.from_environment(config.runtime.device)
        self.check_inputs()  # before anything is written: a wrong folder fails cleanly
        self.run_log = (
            RunLog(self._made(self.out), report, config.runtime.tensorboard) if self.parallel.is_main else None
        )
        if config.runtime.threads:
            torch.set_num_threads(config.runtime.threads)
        self.step = 0
        self.git_commit = git_commit()
        self.build()
        if not self.resume():
            self.initialise()
        self.network = self.distribute()

    @staticmethod
    def _made(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- what a trainer supplies ------------------------------------------------------------------
    def check_inputs(self) -> None:
        """Refuse missing inputs (data folders, caches) before the run folder is written."""
        return None

    @abstractmethod
    def build(self) -> None:
        """Build ``self.model``, the optimisers, the loss and the data (with seeded random streams)."""

    def initialise(self) -> None:
        """A fresh run's start (not called on resume)."""
        return None

    def distribute(self) -> torch.nn.Module:
        """What the steps run: the model, under DDP when several processes train."""
        return self.parallel.wrap(self.model, self.device, ignore=[])

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, by checkpoint prefix."""

    @abstractmethod
    def random_streams(self) -> dict[str, np.random.Generator]:
        """This rank's numpy generators, by name (saved and restored with the torch random state)."""

    @abstractmethod
    def next_batch(self):
        """The next batch, on the device."""

    @abstractmethod
    def train_step(self, batch) -> dict[str, float]:
        """One optimiser step on ``batch`` (advance ``self.step``); the numbers to log."""

    @abstractmethod
    def export(self) -> Path:
        """Write the final weights; their path."""

    def checkpoint_metadata(self) -> dict:
        """A trainer's own entries of ``checkpoint.json``."""
        return {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """A trainer's own tensors of ``checkpoint.safetensors`` (rank 0's)."""
        return {}

    def rank_tensors(self) -> dict[str, torch.Tensor]:
        """This rank's own state to checkpoint besides its random generators (saved for every rank)."""
        return {}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Check and restore a trainer's own part of a checkpoint (before the model and the step)."""
        return None

    def restore_rank_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """This rank's :meth:`rank_tensors`, as saved."""
        return None

    def started_record(self) -> dict:
        """A trainer's own entries of the "started" log record."""
        return {}

    @property
    def kind(self) -> str:
        return self.checkpoint_kind or self.config.model.architecture

    # -- loop -------------------------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        drop = step >= int(self.config.schedule.lr_drop_at * self.config.schedule.steps)
        return self.config.schedule.lr * (0.1 if drop else 1.0)

    def log(self, record: dict) -> None:
        if self.run_log is not None:
            self.run_log.write(record)

    def run(self) -> Path | None:
        """Train to ``config.schedule.steps`` (or ``stop_at``, or the time limit) and export; the weights' path on
        rank 0, None elsewhere."""
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
                "steps": config.schedule.steps,
                "device": str(self.device),
                **self.started_record(),
                "world_size": self.parallel.world_size,
            }
        )
        while self.step < (config.schedule.stop_at or config.schedule.steps):
            window.append(self.train_step(self.next_batch()))
            if self.step % config.runtime.log_every == 0:
                self._log_progress(window, started)
                window.clear()
            out_of_time = self._out_of_time(started)
            if self.step % config.runtime.checkpoint_every == 0 or out_of_time:
                self.save_checkpoint()
            if out_of_time:
                self.log({"event": "time limit reached", "step": self.step})
                break
        self.save_checkpoint()

    def _log_progress(self, window: list[dict], started: float) -> None:
        mean = {k: sum(r[k] for r in window) / len(window) for k in window[0]}
        mean = self.parallel.mean_over_ranks(mean)
        minutes = round((time.monotonic() - started) / 60, 2)
        self.log({"step": self.step, "lr": self.learning_rate(self.step), "minutes": minutes, **mean})

    def _out_of_time(self, started: float) -> bool:
        if not self.config.schedule.max_minutes:
            return False
        return self.parallel.any_rank(time.monotonic() - started > 60 * self.config.schedule.max_minutes)

    # -- checkpoints ------------------------------------------------------------------------------
    @property
    def checkpoint_paths(self) -> tuple[Path, Path]:
        return self.out / "checkpoint.safetensors", self.out / "checkpoint.json"

    @staticmethod
    def _rank_suffix(rank: int) -> str:
        return "" if rank == 0 else f".rank{rank}"  # rank 0 keeps the names of single-process runs

    def save_checkpoint(self) -> None:
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {name: rng.bit_generator.state for name, rng in self.random_streams().items()},
            "tensors": self.rank_tensors(),
        }
        if self.device.type == "cuda":
            state["tensors"]["cuda"] = torch.cuda.get_rng_state(self.device)
        states = self.parallel.gather(state)  # every rank takes part; rank 0 writes
        if not self.parallel.is_main:
            return
        tensors = {f"{MODEL_PREFIX}{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tensors.update(self.checkpoint_tensors())
        meta = {
            "step": self.step,
            "kind": self.kind,
            "config": json.loads(self.config.to_json()),
            "world_size": self.parallel.world_size,
            "git_commit": self.git_commit,
            **self.checkpoint_metadata(),
        }
        for prefix, optimizer in self.optimizers().items():
            values, groups = optimizer_tensors(prefix, optimizer)
            tensors.update(values)
            meta[f"{prefix}_groups"] = groups
        for rank, rank_state in enumerate(states):
            suffix = self._rank_suffix(rank)
            tensors[f"rng.torch{suffix}"] = rank_state["torch"]
            meta[f"rng.numpy{suffix}"] = rank_state["numpy"]
            tensors.update({f"rank{rank}.{name}": value for name, value in rank_state["tensors"].items()})
        tensors_path, meta_path = self.checkpoint_paths
        atomic_write(tensors_path, save(tensors))
        atomic_write(meta_path, json.dumps(meta, default=json_default).encode())

    def resume(self) -> bool:
        """Load the run folder's checkpoint, when there is one (False: a fresh run)."""
        tensors_path, meta_path = self.checkpoint_paths
        if not (tensors_path.exists() and meta_path.exists()):
            return False
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") is None:  # written before checkpoints named their run's kind: another layout
            raise ConfigError(
                f"out: {self.out} holds a checkpoint of an earlier icmkit version, which this one cannot resume: "
                "train into a new out folder"
            )
        if meta["kind"] != self.kind:
            raise ConfigError(f"out: {self.out} holds the checkpoint of a {meta['kind']} run, not of a {self.kind} run")
        tensors = load_file(str(tensors_path))
        self.restore(tensors, meta)
        self.model.load_state_dict(model_tensors(tensors))
        for prefix, optimizer in self.optimizers().items():
            restore_optimizer(prefix, optimizer, tensors, meta[f"{prefix}_groups"])
        self.step = int(meta["step"])
        suffix = self._rank_suffix(self.parallel.rank)
        restored = f"rng.torch{suffix}" in tensors and f"rng.numpy{suffix}" in meta
        if restored:  # absent after resuming with more processes than the run had: streams stay fresh
            torch.set_rng_state(tensors[f"rng.torch{suffix}"])
            for name, rng in self.random_streams().items():
                rng.bit_generator.state = meta[f"rng.numpy{suffix}"][name]
            prefix = f"rank{self.parallel.rank}."
            own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if self.device.type == "cuda" and "cuda" in own:
                torch.cuda.set_rng_state(own.pop("cuda"), self.device)
            self.restore_rank_tensors(own)
        self.log({"event": "resumed", "step": self.step, **({} if restored else {"random_streams": "new"})})
        return True

    def stream_seed(self, stream: int) -> int:
        """Seed of data stream ``stream``; rank r shifts it by 2r so that no two ranks share a stream."""
        return self.config.schedule.seed + 2 * self.parallel.rank + stream


# The registry of trainers, in the order they are asked: (class, whether it trains a given config).
TRAINERS: list[tuple[type[TrainerBase], Callable[[TrainConfig], bool]]] = []


def register_trainer(trains: Callable[[TrainConfig], bool]):
    """Class decorator: the trainer trains the configs ``trains`` accepts (trainers claim disjoint sets)."""

    def register(cls: type[TrainerBase]) -> type[TrainerBase]:
        TRAINERS.append((cls, trains))
        return cls

    return register


def trainer_for(config: TrainConfig) -> type[TrainerBase]:
    """The registered trainer of ``config`` (the trainer modules register on import: see icmkit.train.trainers)."""
    found = [cls for cls, trains in TRAINERS if trains(config)]
    if len(found) != 1:
        claimed = ", ".join(cls.__name__ for cls in found) or "no trainer"
        raise ConfigError(f"architecture {config.model.architecture!r}: {claimed} (exactly one trainer must claim it)")
    return found[0]


__all__ = [
    "TRAINERS",
    "register_trainer",
    "trainer_for",
    "TrainerBase",
    "git_commit",
    "json_default",
    "optimizer_tensors",
    "restore_optimizer",
]
