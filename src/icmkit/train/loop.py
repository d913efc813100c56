"""The training loop for learned pixel codecs: main + auxiliary optimisers, checkpoints, exact resume.

Checkpoints hold the model and both optimisers' state as safetensors, plus a JSON file with the step,
the config and the random-number states, so that a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from icmkit.fileio import atomic_write
from icmkit.losses import RateDistortionLoss
from icmkit.models import build_model
from icmkit.train.config import TrainConfig
from icmkit.train.data import RandomCrops, find_images
from icmkit.weights import save_weights


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"{prefix}.{index}.{slot}"] = torch.as_tensor(value).detach().clone().contiguous()
    return tensors, state["param_groups"]


def _restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


class Trainer:
    def __init__(self, config: TrainConfig):
        config.validate()
        self.config = config
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model = build_model(config.architecture, N=config.N, M=config.M)
        self.loss = RateDistortionLoss(config.lmbda)
        self.optimizer = torch.optim.Adam(self.model.main_parameters(), lr=config.lr)
        self.aux_optimizer = torch.optim.Adam(self.model.aux_parameters(), lr=config.aux_lr)
        self.files = find_images(config.data)
        self.dataset = RandomCrops(self.files, config.crop, seed=config.seed)
        self.batch_rng = np.random.default_rng(config.seed + 1)
        self.step = 0
        self._resume()

    # -- checkpoints ------------------------------------------------------------------------------
    def _checkpoint_paths(self) -> tuple[Path, Path]:
        return self.out / "checkpoint.safetensors", self.out / "checkpoint.json"

    def save_checkpoint(self) -> None:
        tensors_path, meta_path = self._checkpoint_paths()
        tensors = {f"model.{k}": v.detach().contiguous() for k, v in self.model.state_dict().items()}
        main, main_groups = _optimizer_tensors("opt", self.optimizer)
        aux, aux_groups = _optimizer_tensors("aux", self.aux_optimizer)
        tensors.update(main)
        tensors.update(aux)
        tensors["rng.torch"] = torch.get_rng_state()
        atomic_write(tensors_path, save(tensors))
        meta = {
            "step": self.step,
            "config": json.loads(self.config.to_json()),
            "optimizer_groups": main_groups,
            "aux_optimizer_groups": aux_groups,
            "dataset_rng": self.dataset.rng.bit_generator.state,
            "batch_rng": self.batch_rng.bit_generator.state,
        }
        atomic_write(meta_path, json.dumps(meta, default=_json_default).encode())

    def _resume(self) -> None:
        tensors_path, meta_path = self._checkpoint_paths()
        if not (tensors_path.exists() and meta_path.exists()):
            return
        tensors = load_file(str(tensors_path))
        meta = json.loads(meta_path.read_text())
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _restore_optimizer("opt", self.optimizer, tensors, meta["optimizer_groups"])
        _restore_optimizer("aux", self.aux_optimizer, tensors, meta["aux_optimizer_groups"])
        torch.set_rng_state(tensors["rng.torch"])
        self.dataset.rng.bit_generator.state = meta["dataset_rng"]
        self.batch_rng.bit_generator.state = meta["batch_rng"]
        self.step = int(meta["step"])
        self.log({"event": "resumed", "step": self.step})

    # -- loop -------------------------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        drop = step >= int(self.config.lr_drop_at * self.config.steps)
        return self.config.lr * (0.1 if drop else 1.0)

    def next_batch(self) -> torch.Tensor:
        picks = self.batch_rng.integers(0, len(self.dataset), self.config.batch_size)
        return torch.stack([self.dataset[int(i)] for i in picks])

    def train_step(self, batch: torch.Tensor) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        output = self.model(batch)
        parts = self.loss(output, batch)
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        if self.config.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.main_parameters(), self.config.clip_grad)
        self.optimizer.step()
        aux = self.model.aux_loss()
        self.aux_optimizer.zero_grad(set_to_none=True)
        aux.backward()
        self.aux_optimizer.step()
        self.step += 1
        result = {k: float(v.detach()) for k, v in parts.items()}
        result["psnr"] = -10 * math.log10(max(result["mse"], 1e-12))
        result["aux"] = float(aux.detach())
        return result

    def log(self, record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        with open(self.out / "log.jsonl", "a") as handle:
            handle.write(line + "\n")

    def run(self) -> Path:
        config = self.config
        started = time.monotonic()
        window: list[dict] = []
        self.model.train()
        while self.step < config.steps:
            window.append(self.train_step(self.next_batch()))
            if self.step % config.log_every == 0:
                mean = {k: sum(r[k] for r in window) / len(window) for k in window[0]}
                self.log({"step": self.step, "lr": self.learning_rate(self.step),
                          "minutes": round((time.monotonic() - started) / 60, 2), **mean})
                window.clear()
            out_of_time = config.max_minutes and time.monotonic() - started > 60 * config.max_minutes
            if self.step % config.checkpoint_every == 0 or out_of_time:
                self.save_checkpoint()
            if out_of_time:
                self.log({"event": "time limit reached", "step": self.step})
                break
        self.save_checkpoint()
        return self.export()

    def export(self) -> Path:
        """Finalise the model and write deployable weights with their provenance."""
        path = self.out / "final.safetensors"
        export_weights(self.model, self.config, self.step, path)
        return path


def export_weights(model, config: TrainConfig, step: int, path: Path) -> None:
    was_training = model.training
    model.eval()
    model.update()
    save_weights(model, path, {
        "lmbda": config.lmbda, "steps": step, "crop": config.crop, "batch_size": config.batch_size,
        "data": [str(p) for p in config.data], "train_config": config.to_json(),
    })
    model.train(was_training)


def export_checkpoint(run_dir: str | Path, path: str | Path) -> dict:
    """Finalise the latest checkpoint of a run (it may still be training) into a weights file."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "checkpoint.json").read_text())
    config = TrainConfig(**meta["config"])
    tensors = load_file(str(run_dir / "checkpoint.safetensors"))
    model = build_model(config.architecture, N=config.N, M=config.M)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    export_weights(model, config, int(meta["step"]), Path(path))
    return meta


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
